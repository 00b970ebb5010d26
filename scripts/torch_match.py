"""The exported PyTorch optimizers against their torch references (needs the `torch` extra): the
largest difference of the parameters after 100 steps (mixed shapes, a state_dict round trip half
way for the exported one), in float32 and bfloat16, and, in bfloat16, each one's distance from the
reference's float32 run. The training loop is the test's (tests/test_export_torch.py).

    python scripts/torch_match.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import torch  # noqa: E402

from test_export_torch import CASES, max_diff, train  # noqa: E402

print("| program | reference | float32: exported vs reference | bfloat16: exported vs reference "
      "| bfloat16 vs float32 reference: exported | the reference itself |")
print("|---|---|---|---|---|---|")
REFS = {"adamw": "torch.optim.AdamW", "momentum": "torch.optim.SGD(momentum=0.9)", "lion": "lion_pytorch.Lion"}
for name, (ours, ref) in CASES.items():
    truth = train(ref, torch.float32, False)
    f32 = max_diff(train(ours, torch.float32, True), truth)
    o16, r16 = train(ours, torch.bfloat16, True), train(ref, torch.bfloat16, False)
    print(f"| {name} | {REFS[name]} | {f32:.2g} | {max_diff(o16, r16):.3g} | {max_diff(o16, truth):.3g} "
          f"| {max_diff(r16, truth):.3g} |")
