"""Tests of tcc build (tcc.build, tcc.bundle): bundles, INT8 builds, start-up. (Not tests/build: pytest does not
look into folders named build.)"""
