"""A Dask worker preload for tests/slide/test_slide.py: the first worker process to start dies at once (as one the
out-of-memory killer takes while the cluster starts); the marker file at $TCC_TEST_KILL_MARK records that it did,
so every later worker starts."""

import os


def dask_setup(worker) -> None:
    try:
        fd = os.open(os.environ["TCC_TEST_KILL_MARK"], os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(9)
