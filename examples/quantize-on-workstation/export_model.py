# Export your own PyTorch CNN to ONNX for ttaq, keeping BatchNormalization nodes (ttaq adapts their
# parameters on the device, so they must not be folded into the convolutions).
#
#   pip install torch onnx
#   python export_model.py --out mynet.onnx            # the small example net below
#
# For your model, replace `Net()` (and the input size) with your own and load its weights.
import argparse

import torch
import torch.nn as nn


class Net(nn.Module):
    """A small CNN for 1x28x28 inputs and 10 classes; any Conv/BN/ReLU/Add/Pool/Gemm net works."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="mynet.onnx")
    p.add_argument("--weights", help="a state_dict .pt file to load (default: random weights)")
    a = p.parse_args()
    model = Net()
    if a.weights:
        model.load_state_dict(torch.load(a.weights, map_location="cpu"))
    model.eval()  # inference: BN uses its running statistics
    x = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        model, (x,), a.out,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        # Keep BatchNormalization as its own node: PRESERVE exports the module in its current
        # (eval) mode without fusing BN, and no constant folding keeps BN's parameters as
        # initializers instead of folding them into the preceding Conv.
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
        dynamo=False,  # the TorchScript exporter, which honours the two flags above (torch >= 2.5)
    )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
