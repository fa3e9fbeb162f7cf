"""The parity term (an even p): neurons that read the parity of a and b and write that of c.

At an even p, cos(πt) = (−1)^t is a frequency of its own (the Nyquist frequency p/2), and (a + b) mod p keeps the
parity of a + b, so a model may add "c has the parity of a + b" to its clusters' votes. A parity neuron i
(``neurons.PARITY``) is fitted as F_a ≈ m_i + A_i^a (−1)^a, F_b ≈ m'_i + A_i^b (−1)^b, W_L ≈ μ_i + w_i (−1)^c. It has
no circle of phases to integrate over: its activation takes four values, one per (a mod 2, b mod 2).

    L2  each parity neuron symmetrised, A_i = (A_i^a + A_i^b)/2 and offset c_i = m_i + m'_i + b_in[i]:
        Σ_i w_i relu(A_i ((−1)^a + (−1)^b) + c_i) (−1)^c
    L3  that averaged over the two cells of equal a + b parity (as the integral averages over phases):
        P(x) (−1)^c with x = (a + b) mod 2, P(0) = Σ_i w_i (relu(2A_i + c_i) + relu(c_i − 2A_i)) / 2,
        P(1) = Σ_i w_i relu(c_i)

So L3's parity term, like its clusters', depends on (a − b, a + b − c) mod p alone: (a + b) mod 2 = (a − b) mod 2, and
(−1)^c = (−1)^{(a − b) + (a + b − c)}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import alternating
from .neurons import PARITY, NeuronFits


@dataclass(frozen=True)
class Parity:
    """The parity neurons, symmetrised: indices, input amplitude A_i, offset c_i and output weight w_i."""

    p: int
    neurons: np.ndarray
    amplitude: np.ndarray
    offset: np.ndarray
    weight: np.ndarray

    def activations(self) -> np.ndarray:
        """Each neuron's L2 activation per cell (a mod 2, b mod 2): ``[2, 2, n]``."""
        sign = np.array([1.0, -1.0])
        return np.maximum(self.amplitude * (sign[:, None, None] + sign[None, :, None]) + self.offset, 0.0)

    def by_sum(self) -> np.ndarray:
        """L3's P(x) for x = (a + b) mod 2 ``[2]``: the vote for an output of c's parity, times (−1)^c."""
        votes = self.activations() @ self.weight
        return np.array([(votes[0, 0] + votes[1, 1]) / 2, (votes[0, 1] + votes[1, 0]) / 2])

    def table(self) -> np.ndarray:
        """L3's parity term by (a − b, a + b − c) mod p, as ``ladder.integral_table`` holds the clusters' ``[p, p]``."""
        sign = alternating(self.p)  # (−1)^{d + s} = (−1)^d (−1)^s
        return self.by_sum()[np.arange(self.p) % 2][:, None] * np.outer(sign, sign)

    def phasor(self, difference: np.ndarray) -> np.ndarray:
        """L3's parity term as a phasor at the frequency p/2 per input, given (a − b) mod p ``[p, p]``: P(x), real, so
        that Re(P e^{iπc}) = P (−1)^c."""
        return self.by_sum()[difference % 2].astype(complex)


def fit_parity(fits: NeuronFits, b_in: np.ndarray) -> Parity | None:
    """The parity term from the neurons' fits at p/2, or None where no neuron is ``parity`` (every odd p)."""
    idx = np.flatnonzero(fits.status == PARITY)
    if len(idx) == 0:
        return None
    signed = lambda amp, phase: amp[0, idx] * np.cos(phase[0, idx])  # noqa: E731  the fit at p/2 is real: ±|f̂|/p
    amplitude = (signed(fits.amp_a, fits.phase_a) + signed(fits.amp_b, fits.phase_b)) / 2
    offset = fits.offset_a[idx] + fits.offset_b[idx] + b_in[idx]
    return Parity(p=fits.p, neurons=idx, amplitude=amplitude, offset=offset, weight=signed(fits.amp_L, fits.phase_L))
