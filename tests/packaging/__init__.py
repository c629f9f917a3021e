"""Tests of the package as a whole: the wheel installs and works outside the checkout, the import layering holds."""
