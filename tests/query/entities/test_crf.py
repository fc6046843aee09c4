import itertools
import math

import pytest

torch = pytest.importorskip("torch")

from souk.query.entities.crf import CRF, bio_constraints  # noqa: E402

TAGS = ["O", "B-X", "I-X", "B-Y", "I-Y"]


def brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> dict[tuple[int, ...], float]:
    """Score of every tag path of one sequence, by enumeration."""
    trans, start, end = (x.detach() for x in crf._scores())
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        s = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        s = s + sum(trans[a, b] for a, b in zip(path, path[1:]))
        scores[path] = float(s)
    return scores


@pytest.mark.parametrize("constrained", [False, True])
def test_forward_viterbi_and_marginals_match_enumeration(constrained):
    torch.manual_seed(0)
    crf = CRF(len(TAGS), *bio_constraints(TAGS)) if constrained else CRF(len(TAGS))
    with torch.no_grad():
        for p in (crf.transitions, crf.start, crf.end):
            p.normal_()
    emissions = torch.randn(2, 4, len(TAGS), dtype=torch.float64)
    crf = crf.double()
    lengths = [4, 3]
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask).detach()
    paths = crf.decode(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    for b, n in enumerate(lengths):
        scores = brute_force(crf, emissions[b], n)
        values = torch.tensor(list(scores.values()), dtype=torch.float64)
        assert float(log_z[b]) == pytest.approx(float(torch.logsumexp(values, 0)), rel=1e-9)
        assert tuple(paths[b]) == max(scores, key=scores.get)
        probs = {p: math.exp(s - float(log_z[b])) for p, s in scores.items()}
        for t in range(n):
            for k in range(len(TAGS)):
                expected = sum(v for p, v in probs.items() if p[t] == k)
                assert float(marginals[b, t, k]) == pytest.approx(expected, abs=1e-9)
        tags = torch.tensor([paths[b] + [0] * (4 - n)])
        assert float(crf.path_score(emissions[b : b + 1], tags, mask[b : b + 1]).detach()) == pytest.approx(
            scores[tuple(paths[b])]
        )


def test_constrained_decoding_never_starts_inside_an_entity():
    crf = CRF(len(TAGS), *bio_constraints(TAGS))
    emissions = torch.zeros(1, 3, len(TAGS))
    emissions[0, :, TAGS.index("I-X")] = 5.0  # the network insists on I-X everywhere
    (path,) = crf.decode(emissions, torch.ones(1, 3, dtype=torch.bool))
    assert TAGS[path[0]] != "I-X"
    assert all(not (TAGS[b].startswith("I-") and TAGS[a] == "O") for a, b in zip(path, path[1:]))


def test_training_the_crf_alone_learns_the_tags():
    torch.manual_seed(0)
    crf = CRF(3)
    emissions = torch.randn(4, 5, 3)
    gold = torch.tensor([[0, 1, 2, 2, 0]] * 4)
    mask = torch.ones(4, 5, dtype=torch.bool)
    opt = torch.optim.Adam([*crf.parameters(), emissions.requires_grad_()], lr=0.1)
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = crf.neg_log_likelihood(emissions, gold, mask)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10
    assert crf.decode(emissions.detach(), mask) == gold.tolist()
