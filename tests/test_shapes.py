"""The worked examples of the shape formulas, through the API and through `gpuconv shape`."""

import pytest

from gpuconv import shapes
from gpuconv.cli import main


@pytest.mark.parametrize("in_chw, K, R, kw, out_chw, params", [
    ((3, 224, 224), 64, 7, dict(stride=2, padding=3), (64, 112, 112), 9472),   # ResNet-50 stem
    ((3, 230, 230), 64, 7, dict(stride=2, padding=0), (64, 112, 112), 9472),   # the same, pre-padded
    ((3, 230, 230), 64, 7, dict(stride=2, padding=1), (64, 113, 113), 9472),   # floor, not round
    ((3, 227, 227), 96, 11, dict(stride=4), (96, 55, 55), None),               # AlexNet conv1
    ((10, 15, 15), 10, 2, dict(stride=2), (10, 7, 7), None),
    ((1, 32, 32), 6, 5, {}, (6, 28, 28), None),                                 # LeNet conv1
    ((1, 9, 9), 1, 3, {}, (1, 7, 7), None),
    ((1, 5, 5), 1, 3, dict(stride=2, padding="valid"), (1, 2, 2), None),
    ((3, 5, 5), 2, 3, dict(stride=2, padding=1), (2, 3, 3), None),
    ((3, 128, 128), 40, 5, {}, (40, 124, 124), 3040),
])
def test_worked_examples(in_chw, K, R, kw, out_chw, params):
    C = in_chw[0]
    assert shapes.conv2d_output_shape((1,) + in_chw, (K, C, R, R), **kw) == (1,) + out_chw
    summary = shapes.summarize(in_chw, [shapes.Conv2d(K, R, **kw)])
    assert summary.output_shape == (1,) + out_chw
    if params is not None:
        assert shapes.conv2d_params(C, K, R) == params
        assert summary.total_params == params


def test_batch_example():
    # 1×1×28×28 with 2 filters 1×5×5 -> 1×2×24×24
    assert shapes.conv2d_output_shape((1, 1, 28, 28), (2, 1, 5, 5)) == (1, 2, 24, 24)


def _rows(text):
    """The lines of `gpuconv shape`'s table, without its rules."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not set(ln.strip()) <= {"─"}]
    return lines


@pytest.mark.parametrize("argv, out, params", [
    (["3x224x224", "conv 64 7 stride=2 padding=3"], "1×64×112×112", "9,472"),
    (["3x230x230", "conv 64 7x7 stride=2 padding=1"], "1×64×113×113", None),
    (["3x227x227", "conv 96 11 stride=4"], "1×96×55×55", None),
    (["10x15x15", "conv 10 2 stride=2"], "1×10×7×7", None),
    (["1x32x32", "conv 6 5"], "1×6×28×28", None),
    (["1x9x9", "conv 1 3"], "1×1×7×7", None),
    (["1x5x5", "conv 1 3 stride=2 padding=valid"], "1×1×2×2", None),
    (["1x1x28x28", "conv 2 5"], "1×2×24×24", None),
    (["3x5x5", "conv 2 3 stride=2 padding=1"], "1×2×3×3", None),
    (["3x128x128", "conv 40 5"], "1×40×124×124", "3,040"),
])
def test_cli_shape(capsys, argv, out, params):
    assert main(["shape"] + argv) == 0
    lines = _rows(capsys.readouterr().out)
    assert out in lines[-2]
    assert lines[-1].startswith("total trainable parameters")
    if params is not None:
        assert lines[-1].split()[-1] == params


def test_cli_stack_and_errors(capsys):
    assert main(["shape", "3x224x224", "conv 64 7 stride=2 padding=3", "maxpool 3 stride=2 padding=1",
                 "gavgpool", "flatten", "linear 1000"]) == 0
    lines = _rows(capsys.readouterr().out)
    assert "1×64×56×56" in lines[3] and "1×1000" in lines[-2]
    assert lines[-1].split()[-1] == f"{9472 + 64 * 1000 + 1000:,}"
    assert main(["shape", "3x9x9", "conv 1 11"]) == 2
    assert "larger than the padded input" in capsys.readouterr().err
    assert main(["shape", "3x9x9", "bogus 3"]) == 2
    assert main(["shape", "3x9x9", "conv 1 3 nope=1"]) == 2


def test_cli_shape_table_names_every_kernel_and_aligns(capsys):
    """A 3×3 kernel (the dataclass default) is still named, and the shape and parameter columns are
    right-aligned: each ends in the same column on every row."""
    assert main(["shape", "3x32x32", "conv 16 3 padding=1", "conv 32 3 stride=2 padding=same groups=2",
                 "conv 8 5x3", "maxpool 2", "gmaxpool", "flatten", "linear 10"]) == 0
    lines = _rows(capsys.readouterr().out)
    descriptions = [ln.split("  ")[0] for ln in lines[1:-1]]
    assert descriptions == ["input", "Conv2d(16, 3×3, padding=1)", "Conv2d(32, 3×3, stride=2, padding=same, groups=2)",
                            "Conv2d(8, 5×3)", "MaxPool2d(2×2)", "GlobalPool2d(max)", "Flatten()", "Linear(10)"]
    shapes_end = {ln.index(sh) + len(sh) for ln, sh in zip(lines[1:-1], ["1×3×32×32", "1×16×32×32", "1×32×16×16",
                                                                           "1×8×12×14", "1×8×6×7", "1×8×1×1",
                                                                           "1×8", "1×10"])}
    assert len(shapes_end) == 1
    assert len({len(ln.rstrip()) for ln in lines[2:]}) == 1          # the params column ends together


def test_describe_shows_kernel_and_changed_fields():
    assert shapes.describe(shapes.Conv2d(64, 3)) == "Conv2d(64, 3×3)"
    assert shapes.describe(shapes.Conv2d(64, (5, 3), stride=2, padding=(0, 1, 2, 1))) == \
        "Conv2d(64, 5×3, stride=2, padding=(0, 1, 2, 1))"
    assert shapes.describe(shapes.ConvTranspose2d(8, 4, stride=2)) == "ConvTranspose2d(8, 4×4, stride=2)"
    assert shapes.describe(shapes.AvgPool2d(3, ceil_mode=True)) == "AvgPool2d(3×3, ceil_mode=True)"


def test_same_padding_any_stride():
    for H in range(1, 30):
        for s in (1, 2, 3):
            for R in (1, 2, 3, 4, 5):
                assert shapes.conv2d_output_size((H, H), R, stride=s, padding="same") == (-(-H // s),) * 2


def test_other_formulas():
    assert shapes.conv_transpose2d_output_size((7, 7), 3, stride=2, padding=1, output_padding=1) == (14, 14)
    assert shapes.pool2d_output_size((112, 112), 3, stride=2, padding=1) == (56, 56)
    assert shapes.pool2d_output_size((5, 5), 2, stride=2, ceil_mode=True) == (3, 3)
    assert shapes.pool2d_output_size((6, 6), 3, stride=3, padding=1, ceil_mode=True) == (3, 3)
    assert shapes.conv2d_params(256, 256, 3, groups=256) == 256 * 9 + 256
    assert shapes.linear_params(4096, 1000, bias=False) == 4096000
    with pytest.raises(ValueError, match="output_padding"):
        shapes.conv_transpose2d_output_size((7, 7), 3, stride=2, output_padding=2)
