"""A planted dictionary: data whose true sparse atoms are known, so that a
sparse autoencoder's recovery of them can be measured."""

import numpy as np


def planted_dictionary(n=6000, d=32, m=48, k=3, noise=0.01, seed=0):
    """Rows = k sparse non-negative codes times random unit atoms, plus noise.

    Returns the rows (float32, shape (n, d)) and the atoms (shape (m, d)).
    """
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(m, d))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, m))
    for i in range(n):
        codes[i, rng.choice(m, k, replace=False)] = rng.uniform(0.5, 2.0, k)
    X = codes @ atoms + noise * rng.normal(size=(n, d))
    return X.astype(np.float32), atoms


def recovered(sae, atoms):
    """Share of planted atoms matched by a decoder row at cosine >= 0.9."""
    D = sae.decoder_weight_ / np.linalg.norm(sae.decoder_weight_, axis=1)[:, None]
    return float(((atoms @ D.T).max(axis=1) >= 0.9).mean())
