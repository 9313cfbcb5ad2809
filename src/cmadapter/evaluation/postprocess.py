"""Transductive re-scoring of a similarity matrix (opt-in, always reported under its own name).

These methods look at the whole test set (or a query bank) before ranking, which plain retrieval cannot,
so their numbers are never mixed with the plain ones. Each takes a [queries, gallery] matrix of
logit-scaled similarities and returns one to rank by; video→text applies them to the transpose.

- ``dual-softmax`` (CAMoE, Cheng et al. 2021): ``S * softmax(S / t, over queries)``: a gallery item that
  matches many queries is discounted.
- ``inverted-softmax`` (Smith et al. 2017): ``exp(S / t)`` normalised per gallery item by its summed
  ``exp`` over a query bank — here the test queries themselves.
- ``qb-norm`` (Bogolin et al. 2022, dynamic inverted softmax): the inverted softmax only for queries whose
  top gallery item is among the items that are some bank query's top match; other queries keep ``S``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import CmadapterError


def dual_softmax(similarity: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    prior = torch.softmax(similarity / temperature, dim=0)
    return similarity * prior


def inverted_softmax(
    similarity: torch.Tensor, bank: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    bank = similarity if bank is None else bank
    # log-domain: exp(S/t) / sum_bank exp(B/t) ranks like S/t - logsumexp_bank(B/t)
    return similarity / temperature - torch.logsumexp(bank / temperature, dim=0, keepdim=True)


def qb_norm(similarity: torch.Tensor, bank: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    bank = similarity if bank is None else bank
    activated = torch.zeros(similarity.shape[1], dtype=torch.bool)
    activated[bank.argmax(dim=1)] = True
    normalised = inverted_softmax(similarity, bank, temperature)
    use_normalised = activated[similarity.argmax(dim=1)][:, None]
    return torch.where(use_normalised, normalised, similarity)


POSTPROCESSORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dual-softmax": dual_softmax,
    "inverted-softmax": inverted_softmax,
    "qb-norm": qb_norm,
}


def check_postprocessors(names: list[str]) -> None:
    unknown = [n for n in names if n not in POSTPROCESSORS]
    if unknown:
        raise CmadapterError(f"unknown post-processing {unknown[0]!r}; choose from {', '.join(POSTPROCESSORS)}")
