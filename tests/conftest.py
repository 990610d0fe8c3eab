"""Shared test setup: one torch thread (tiny tensors run faster and deterministic on the 2-core CI), and a CPU
treated as one without native bfloat16."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def cpu_without_native_bf16():
    """Tests run as on a CPU without native bfloat16: ``precision='auto'`` resolves to fp32, so the tiny models'
    numbers can be compared exactly with hand computations. bf16 is tested where a test asks for it explicitly
    (``precision='bf16'``; tests/test_precision.py), and the capability check itself is tested there."""
    from moalign import precision

    with pytest.MonkeyPatch.context() as patch:  # session-wide: module-scoped fixtures see it too
        patch.setattr(precision, "_cpu_has_native_bf16", lambda: False)
        yield


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads; on the shared 2-core machine extra threads only contend. A test that
    changes the thread count gets it restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
