"""ArchSpec: serialisation, validation, hand-checked parameter and MAC counts, the study's Loihi net."""

import json

import pytest
import torch
from torch import nn

from edgefer.errors import EdgeferError
from edgefer.nn.spec import CKPLUS_CNN, FER2013_CNN, LOIHI_STUDY, PRESETS, ArchSpec, layer_table, resolve_arch

SMALL = dict(filters=(4,), convs_per_block=1, kernel_size=3, downsample="maxpool", batchnorm=False, bias=True,
             dense=(), input_size=8, num_classes=2, head="flatten")


@pytest.mark.parametrize("spec", [*PRESETS.values(), ArchSpec(**SMALL),
                                  ArchSpec(filters=(8, 16), convs_per_block=(1, 3), dense=(10, 5), stem=2,
                                           head="avg", dropout=0.2, downsample="avgpool")])
def test_json_round_trip(spec):
    text = spec.to_json()
    json.loads(text)  # plain JSON
    again = ArchSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_convs_per_block_int_expands():
    assert ArchSpec(filters=(4, 8, 16), convs_per_block=2).convs_per_block == (2, 2, 2)


def test_load_from_file_and_resolve(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(ArchSpec(**SMALL).to_json())
    assert ArchSpec.load(path) == ArchSpec(**SMALL)
    assert resolve_arch(str(path)) == ArchSpec(**SMALL)
    assert resolve_arch("loihi-study") is LOIHI_STUDY
    with pytest.raises(EdgeferError, match="unknown architecture"):
        resolve_arch("no-such-arch")


def test_unknown_field_raises_naming_source():
    data = ArchSpec(**SMALL).to_dict() | {"colour": "blue"}
    with pytest.raises(EdgeferError, match="colour") as info:
        ArchSpec.from_dict(data, "my_arch.json")
    assert "my_arch.json" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"filters"'])
def test_bad_json_raises(text):
    with pytest.raises(EdgeferError) as info:
        ArchSpec.from_json(text, "arch.json")
    assert "arch.json" in str(info.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(kernel_size=2), "kernel_size"),
        (dict(kernel_size=0), "kernel_size"),
        (dict(downsample="strided"), "downsample"),
        (dict(head="max"), "head"),
        (dict(activation="tanh"), "activation"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(filters=()), "at least one block"),
        (dict(filters=(4, 0)), "positive"),
        (dict(dense=(0,)), "positive"),
        (dict(stem=-1), "positive"),
        (dict(convs_per_block=0), "convs_per_block"),
        (dict(convs_per_block=(1, 2)), "convs_per_block"),
        (dict(filters=(4, 4, 4, 4), input_size=8), "shrink"),
    ],
)
def test_invalid_values_raise(change, message):
    with pytest.raises(EdgeferError, match=message):
        ArchSpec(**(SMALL | change))


@pytest.mark.parametrize("text", ['{"kernel_size": "3"}', '{"dense": 5}', '{"filters": ["a"]}'])
def test_wrong_types_in_json_raise_edgefer_error(text):
    with pytest.raises(EdgeferError) as info:
        ArchSpec.from_json(text, "arch.json")
    assert "arch.json" in str(info.value)


def test_hand_counted_params_and_macs():
    # conv 1->4, 3x3, pad 1 on 8x8: weights 4*1*3*3 + bias 4 = 40; MACs = 8*8 outputs * 4 maps * 9 = 2304
    # max-pool to 4x4 -> flatten 4*4*4 = 64 -> dense to 2 logits: 64*2 + 2 = 130 params, 64*2 = 128 MACs
    spec = ArchSpec(**SMALL)
    table = spec.layer_table()
    assert [(r["name"], r["kind"]) for r in table] == [("conv1_1", "conv"), ("logits", "dense")]
    conv, logits = table
    assert (conv["params"], conv["macs"], conv["output"], conv["neurons"]) == (40, 2304, [4, 8, 8], 256)
    assert (logits["params"], logits["macs"], logits["output"], logits["neurons"]) == (130, 128, [2], 2)
    summary = spec.summary()
    assert (summary["params"], summary["macs"], summary["neurons"]) == (170, 2432, 258)
    assert sum(p.numel() for p in spec.build().parameters()) == 170


def test_hand_counted_batchnorm_stride2_and_no_bias():
    # batch-norm (gamma, beta per channel = 8) folds into the conv row: 4*9 + 8 = 44 (no bias);
    # a stride-2 conv on 8x8 with pad 1 gives 4x4: MACs = 4*4*4*9 = 576; flatten 64 -> 2: 128 params
    spec = ArchSpec(**(SMALL | dict(batchnorm=True, bias=False, downsample="stride2")))
    conv, logits = spec.layer_table()
    assert (conv["params"], conv["macs"], conv["output"]) == (44, 576, [4, 4, 4])
    assert (logits["params"], logits["macs"]) == (128, 128)


def test_hand_counted_stem_dense_and_avg_head():
    # stem 1x1 1->2 with bias: 4 params, 8*8*2*1 = 128 MACs; conv 2->4 3x3: 2*4*9 + 4 = 76, 8*8*4*18 = 4608 MACs;
    # global average pool -> 4 -> dense 3: 4*3+3 = 15 (12 MACs) -> logits 2: 3*2+2 = 8 (6 MACs)
    spec = ArchSpec(**(SMALL | dict(stem=2, head="avg", dense=(3,))))
    rows = spec.layer_table()
    assert [r["name"] for r in rows] == ["stem", "conv1_1", "fc1", "logits"]
    assert [r["params"] for r in rows] == [4, 76, 15, 8]
    assert [r["macs"] for r in rows] == [128, 4608, 12, 6]


def test_layer_table_on_any_module():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 5 * 5, 3))
    rows = layer_table(model, (1, 5, 5))
    assert [r["macs"] for r in rows] == [5 * 5 * 2 * 9, 50 * 3]
    assert [r["params"] for r in rows] == [2 * 9 + 2, 50 * 3 + 3]


def test_loihi_study_preset():
    spec = LOIHI_STUDY
    assert spec.summary()["params"] == 180_167
    model = spec.build()
    modules = list(model.modules())
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d)) for m in modules)
    assert all(m.bias is None for m in modules if isinstance(m, (nn.Conv2d, nn.Linear)))
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [3, 12, 12, 24, 24, 44, 44]
    assert [c.stride for c in convs].count((2, 2)) == 3
    assert convs[0].kernel_size == (1, 1)
    dense = [m for m in modules if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(6 * 6 * 44, 85), (85, 100), (100, 7)]
    with torch.no_grad():
        out = model(torch.rand(2, 1, 48, 48))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("spec", [CKPLUS_CNN, FER2013_CNN])
def test_vgg_presets_forward(spec):
    model = spec.build().eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)


def test_fer2013_preset_budget():
    s = FER2013_CNN.summary()
    assert s["params"] <= 2_000_000 and s["macs"] <= 100_000_000


def test_layer_table_restores_training_mode():
    model = ArchSpec(**SMALL).build().train()
    layer_table(model, (1, 8, 8))
    assert model.training
