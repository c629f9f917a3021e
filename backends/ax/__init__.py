"""The Axera NPU backend: kits for the Pulsar v1 and Pulsar2 toolchains (ax620, ax620e, ax650)."""
