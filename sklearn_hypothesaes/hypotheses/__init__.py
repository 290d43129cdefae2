"""Stages 3-5, latents -> hypotheses -> statistics: :class:`LatentSelector`;
the describers (latent activations + texts -> one description per latent, with
fidelity) and annotators (texts x concepts -> matrix), offline and LLM-backed;
:class:`HypothesisGenerator`, which composes them; and the statistics of
:func:`evaluate_hypotheses`."""
