import numpy as np
import pytest
import torch

from quadlens.task import ModularAddition, is_prime


def test_pairs_and_targets_cover_every_input():
    task = ModularAddition(7)
    assert len(task.a) == 49
    assert set(zip(task.a.tolist(), task.b.tolist())) == {(a, b) for a in range(7) for b in range(7)}
    assert torch.equal(task.targets, (task.a + task.b) % 7)


def test_split_is_deterministic_disjoint_and_complete():
    task = ModularAddition(13)
    train, test = task.split(seed=5, train_fraction=0.8)
    again_train, again_test = task.split(seed=5, train_fraction=0.8)
    assert torch.equal(train, again_train) and torch.equal(test, again_test)
    assert len(train) == round(0.8 * 169) and len(train) + len(test) == 169
    assert set(train.tolist()).isdisjoint(test.tolist())
    other_train, _ = task.split(seed=6, train_fraction=0.8)
    assert not torch.equal(train, other_train)


@pytest.mark.parametrize("p", [2, 1, -5])
def test_too_small_modulus_is_refused(p):
    with pytest.raises(ValueError, match="p must be at least 3"):
        ModularAddition(p)


def test_a_modulus_too_large_to_test_for_primality_quickly_is_refused():
    with pytest.raises(ValueError, match=rf"p must be at most 100,000 \(the task has p² inputs\), got p={10**28 + 57}"):
        ModularAddition(10**28 + 57)


def test_non_integer_modulus_is_refused():
    with pytest.raises(TypeError, match=r"p must be a whole number, got float \(7.0\)"):
        ModularAddition(7.0)
    with pytest.raises(TypeError, match="p must be a whole number, got bool"):
        ModularAddition(True)
    assert type(ModularAddition(np.int64(7)).p) is int


def test_composite_modulus_warns():
    for p in (12, 15):
        with pytest.warns(UserWarning, match=f"p={p} is not prime.*the bounds stay sound"):
            ModularAddition(p)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.001])
def test_bad_train_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match="train_fraction"):
        ModularAddition(11).split(0, fraction)


def test_is_prime():
    assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]
