"""One torch thread for these tests: the suite runs on 2 shared cores, where a second torch thread
mostly waits for the first (and can make small CPU training many times slower)."""
import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
