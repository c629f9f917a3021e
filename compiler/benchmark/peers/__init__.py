"""The runtimes a board's engineer would otherwise ship (ONNX Runtime's MLAS, LiteRT's XNNPACK and ruy), run for
AArch64 under qemu on the same CPU classes as tcc's bundles and counted the same way: executed instructions and
estimated cycles per inference (`measure`), in an AArch64 sysroot the project makes itself (`sysroot`)."""
