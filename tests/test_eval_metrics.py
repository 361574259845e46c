"""imnet.eval metrics, multi-crop arithmetic and ReaL file reading, against hand-computed cases."""
import json

import pytest
import torch

from imnet.errors import ImnetError
from imnet.eval.crops import crop_probabilities, crop_scores, pass_crops
from imnet.eval.metrics import rank_classes, real_accuracy, topk_accuracy, topk_correct
from imnet.eval.real import find_real_labels, load_real_labels


def test_rank_classes_breaks_ties_by_lower_class_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0],
                           [2.0, 2.0, 2.0, 2.0, 2.0]])
    assert rank_classes(scores, 3).tolist() == [[1, 2, 4], [0, 1, 2]]
    # the same on a float16 copy (what the store holds)
    assert rank_classes(scores.half(), 3).tolist() == [[1, 2, 4], [0, 1, 2]]


@pytest.mark.parametrize("classes", [3, 5, 6, 40])
def test_rank_classes_equals_a_full_stable_sort_under_many_ties(classes):
    scores = torch.randint(0, 4, (500, classes), generator=torch.Generator().manual_seed(classes)).float()
    full = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :5]
    assert torch.equal(rank_classes(scores, 5), full)


def test_topk_hand_computed_with_ties():
    # 4 images, 6 classes. Image 2: label 3 ties with class 1 for the top score -> class 1 wins top-1.
    scores = torch.tensor([
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # label 1: top-1 hit
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],   # label 4: rank 5 -> top-5 hit only
        [0.0, 0.7, 0.0, 0.7, 0.0, 0.0],   # label 3: tie with 1, loses -> top-5 hit only
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # label 5: rank 6 -> miss
    ])
    labels = torch.tensor([1, 4, 3, 5])
    acc = topk_accuracy(scores, labels)
    assert acc.top1 == pytest.approx(25.0)
    assert acc.top5 == pytest.approx(75.0)
    assert acc.n_images == 4
    assert topk_correct(scores, labels, 2).tolist() == [True, False, True, False]


def test_top5_with_fewer_than_five_classes_counts_every_image():
    scores = torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    acc = topk_accuracy(scores, torch.tensor([0, 2]))
    assert acc.top1 == pytest.approx(0.0)
    assert acc.top5 == pytest.approx(100.0)


def test_real_accuracy_excludes_empty_lists_and_takes_any_of_topk():
    scores = torch.tensor([
        [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],   # top-1 0
        [0.0, 0.0, 0.8, 0.7, 0.0, 0.0, 0.0],   # top-1 2
        [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9],   # top-1 6, class 0 at rank 2
        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],   # left out: empty list
    ])
    real = [[0, 4], [3, 5], [1], []]
    acc = real_accuracy(scores, real)
    assert acc.n_images == 3
    assert acc.top1 == pytest.approx(100 / 3)   # only image 0
    # top-5: image 0 yes, image 1 (3 at rank 2) yes, image 2: ranks 6,0,1,2,3 -> 1 is in -> yes
    assert acc.top5 == pytest.approx(100.0)
    none = real_accuracy(scores[:1], [[]])
    assert none.n_images == 0 and none.top1 is None


def test_crop_arithmetic_one_five_ten_from_one_pass():
    torch.manual_seed(0)
    logits = torch.randn(3, 10, 7)
    # 1-crop is the centre crop, FiveCrop's crop 4
    assert torch.equal(crop_scores(logits, 1), logits[:, 4])
    assert torch.allclose(crop_probabilities(logits, 1), torch.softmax(logits[:, 4], -1))
    # 5-crop averages the probabilities of the first five, 10-crop of all ten
    p5 = torch.softmax(logits[:, :5], -1).mean(1)
    p10 = torch.softmax(logits, -1).mean(1)
    assert torch.allclose(crop_probabilities(logits, 5), p5)
    assert torch.allclose(crop_probabilities(logits, 10), p10)
    # the stored score of a multi-crop is log p: softmax gives the averaged probabilities back
    assert torch.allclose(torch.softmax(crop_scores(logits, 10), -1), p10, atol=1e-6)
    # averaging probabilities is not averaging logits: a case where they rank differently
    # 3 crops sure of class 1, 7 crops mildly for class 0: probabilities say 0, mean logits say 1
    mixed = torch.tensor([[[0.0, 30.0]] * 3 + [[1.0, 0.0]] * 7])
    assert crop_probabilities(mixed, 10).argmax(1).item() == 0
    assert mixed.mean(1).argmax(1).item() == 1
    with pytest.raises(ValueError):
        crop_scores(logits[:, :5], 10)


@pytest.mark.parametrize("counts, expected", [([1], 1), ([1, 5], 5), ([5], 5), ([1, 5, 10], 10), ([10, 1], 10)])
def test_pass_crops(counts, expected):
    assert pass_crops(counts) == expected


def test_pass_crops_rejects_other_counts():
    with pytest.raises(ValueError):
        pass_crops([3])


def _write(path, payload):
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_load_real_labels_reads_lists(tmp_path):
    path = _write(tmp_path / "real.json", [[1], [], [2, 999]])
    assert load_real_labels(path, 3) == [[1], [], [2, 999]]


@pytest.mark.parametrize("payload, count, message", [
    ([[1], [2]], 3, "2 ReaL label entries but the val split has 3 images"),
    ([[1], 2, [3]], 3, "entry 1 (ILSVRC2012_val_00000002.JPEG) is 2, not a list"),
    ([[1], [2], [1000]], 3, "entry 2 (ILSVRC2012_val_00000003.JPEG) holds 1000, not a class index in 0..999"),
    ([[-1], [2], [3]], 3, "entry 0 (ILSVRC2012_val_00000001.JPEG) holds -1"),
    ([[1], ["2"], [3]], 3, 'entry 1 (ILSVRC2012_val_00000002.JPEG) holds "2"'),
    ([[1], [True], [3]], 3, "entry 1 (ILSVRC2012_val_00000002.JPEG) holds true"),
    ({"0": [1]}, 1, "must be a JSON list of lists"),
    ("[[1], [2", 2, "not a readable JSON"),
])
def test_load_real_labels_errors_name_file_and_entry(tmp_path, payload, count, message):
    path = _write(tmp_path / "real.json", payload)
    with pytest.raises(ImnetError) as err:
        load_real_labels(path, count)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_load_real_labels_missing_file(tmp_path):
    with pytest.raises(ImnetError, match="not found"):
        load_real_labels(tmp_path / "nope.json", 3)


def test_find_real_labels_prefers_data_then_src(tmp_path):
    data, src = tmp_path / "data", tmp_path / "src"
    data.mkdir(), src.mkdir()
    with pytest.raises(ImnetError, match="looked at"):
        find_real_labels(data, src)
    _write(src / "real.json", [])
    assert find_real_labels(data, src) == src / "real.json"
    (data / "meta").mkdir()
    _write(data / "meta" / "real.json", [])
    assert find_real_labels(data, src) == data / "meta" / "real.json"
    _write(data / "real.json", [])
    assert find_real_labels(data, src) == data / "real.json"
