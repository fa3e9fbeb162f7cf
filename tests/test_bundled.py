"""The model shipped with quadlens: the paper's pizza configuration, 100 % accurate."""

import numpy as np
import torch

from quadlens import ModelConfig, separable_tables
from quadlens.cli import accuracy
from quadlens.task import ModularAddition


def test_bundled_model_is_the_paper_configuration(bundled):
    assert bundled.cfg == ModelConfig(p=59, d_model=128, n_heads=4, d_head=32, d_mlp=512, act_fn="relu",
                                      attention_rate=1.0, constant_attention=(0.5, 0.5))
    assert bundled.metadata["seed"] == 0 and bundled.metadata["epochs_trained"] == 10_000


def test_bundled_model_is_fully_accurate(bundled):
    assert accuracy(bundled) == 1.0
    assert bundled.metadata["metrics"]["test_accuracy"] == 1.0


def test_bundled_model_tables_reproduce_its_logits(bundled):
    tables = separable_tables(bundled)
    with torch.no_grad():
        logits = bundled.all_logits(torch.float64).numpy()
    np.testing.assert_allclose(tables.logits(), logits, rtol=0, atol=1e-10)
    assert (tables.logits().argmax(-1) == ModularAddition(59).targets.reshape(59, 59).numpy()).all()
