"""Skip marks the tests share (TVM's: tvm_util.needs_tvm)."""

from __future__ import annotations

import pytest

from tests.helpers import FIXTURES

# the DDSNet authors' checkpoints and images (../shared/fixtures/ddsnet beside the checkout; CI has them)
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="../shared/fixtures/ddsnet is not beside the checkout"
)
