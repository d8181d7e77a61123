"""ZeroGPU, with a stand-in `spaces` module that records every decorated call: uploads and cost
measurements run inside spaces.GPU, with durations that fit the work, and return CPU data only."""
from __future__ import annotations

import json
import subprocess
import sys

from ccnet.project import DEMOS, ROOT

STAND_IN = '''
import json, sys, types
import torch

calls = []

def GPU(fn=None, duration=60):
    def wrap(func):
        def run(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            result = func(*args, **kwargs)
            cuda = []
            def visit(value):
                if isinstance(value, torch.Tensor):
                    cuda.append(value.is_cuda)
                elif isinstance(value, (list, tuple)):
                    for item in value:
                        visit(item)
                elif isinstance(value, dict):
                    for item in value.values():
                        visit(item)
                elif hasattr(value, "__dict__"):
                    for item in vars(value).values():
                        visit(item)
            visit(result)
            calls.append({"name": func.__name__, "seconds": seconds, "tensors": len(cuda), "cuda": any(cuda)})
            return result
        return run
    return wrap(fn) if fn else wrap

sys.modules["spaces"] = types.SimpleNamespace(GPU=GPU)

def no_compile(*args, **kwargs):
    raise AssertionError("torch.compile called at request time")

torch.compile = no_compile

from ccnet.app.explorer import Explorer

explorer = Explorer("default", device="cpu")
explorer.analyse(sys.argv[1])
explorer.explain(sys.argv[1], 100, 100)  # a click: answered from the cache, no GPU call
explorer.cost(sys.argv[1])
print(json.dumps(calls))
'''


def test_uploads_and_cost_run_inside_spaces_gpu_and_return_cpu_data():
    run = subprocess.run([sys.executable, "-c", STAND_IN, str(DEMOS / "street_seed1_car.png")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    calls = json.loads(run.stdout.strip().splitlines()[-1])
    names = [call["name"] for call in calls]
    assert names.count("_run_network") == 1  # one network run for the upload, none for the click
    assert names.count("_measure") == 1  # criss-cross R = 1, 2 and 3 and the non-local block, interleaved
    network = next(call for call in calls if call["name"] == "_run_network")
    assert network["tensors"] >= 3 and not any(call["cuda"] for call in calls)
    assert 10 <= network["seconds"] <= 15  # the small embedded model at 256 x 128: about the start-up
    assert all(10 <= call["seconds"] <= 60 for call in calls)


def test_the_requested_gpu_time_grows_with_the_work():
    import numpy as np

    from ccnet.app.server.zerogpu import network_seconds
    from ccnet.inference.predictor import Protocol
    from ccnet.nn.model import CCNetConfig

    class Stub:
        def __init__(self, depth: int, resize: tuple[int, int] | None) -> None:
            self.net = type("Net", (), {"config": CCNetConfig(depth=depth)})()
            self.protocol = Protocol(test_resize=resize)

    small, large = np.zeros((256, 512, 3), np.uint8), np.zeros((1024, 2048, 3), np.uint8)
    assert network_seconds(Stub(50, None), small) < network_seconds(Stub(50, None), large)
    assert network_seconds(Stub(50, None), large) < network_seconds(Stub(101, None), large) <= 120
    assert network_seconds(Stub(50, (2048, 1024)), small) == network_seconds(Stub(50, (2048, 1024)), large)
