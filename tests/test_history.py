import torch

from rm_edit import LLaDATransformer
from rm_edit.history import HistoryState, code_embeddings, history_embedding, scatter_offsets, update_history
from rm_edit.layout import SHAPES


def _model():
    torch.manual_seed(0)
    return LLaDATransformer(vocab_size=512, d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64).eval()


def test_history_adds_no_parameters_and_alpha_zero_is_identity():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    emb = model.get_input_embeddings()
    hist = HistoryState.empty(1, 4, 32)
    for state in ([5, 6, SHAPES.mask_code, 7], [5, 9, 1, 7]):
        e, held = code_embeddings(emb, SHAPES, torch.tensor([state]))
        hist = update_history(hist, e, held, decay=0.5)
    ids = torch.randint(0, 512, (1, 10))
    positions = torch.tensor([[2, 3, 4, 5]])
    with torch.no_grad():
        plain = model(ids).logits
        zero = model(ids, embedding_offset=scatter_offsets(history_embedding(hist, alpha=0.0), positions, 10)).logits
        some = model(ids, embedding_offset=scatter_offsets(history_embedding(hist, alpha=1.0), positions, 10)).logits
    assert torch.equal(plain, zero)
    assert not torch.allclose(plain, some)
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in before.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_decayed_mean_by_hand():
    emb = torch.nn.Embedding(512, 2)
    with torch.no_grad():
        emb.weight.zero_()
        emb.weight[SHAPES.image_code_offset + 1] = torch.tensor([1.0, 0.0])
        emb.weight[SHAPES.image_code_offset + 2] = torch.tensor([0.0, 1.0])
    hist = HistoryState.empty(1, 2, 2)
    for state in ([1, SHAPES.mask_code], [2, SHAPES.mask_code]):
        hist = update_history(hist, *code_embeddings(emb, SHAPES, torch.tensor([state])), decay=0.5)
    ref = history_embedding(hist, alpha=2.0)
    # position 0: (0.5*e1 + e2) / 1.5, times alpha 2; position 1 never held a code -> zero
    torch.testing.assert_close(ref[0, 0], 2 * torch.tensor([0.5, 1.0]) / 1.5)
    assert torch.equal(ref[0, 1], torch.zeros(2))


class _PartitionedEmbedding(torch.nn.Embedding):
    """An embedding as DeepSpeed ZeRO-3 leaves it between forwards: ``weight`` an empty partition, the full table
    available only inside its own forward (gathered there)."""

    def __init__(self, table: torch.Tensor):
        super().__init__(*table.shape)
        self.table = table
        self.weight = torch.nn.Parameter(torch.empty(0))

    def forward(self, ids):
        return torch.nn.functional.embedding(ids, self.table)


def test_history_reads_the_width_from_the_embedding_not_its_weight():
    from rm_edit.history import HistoryRecorder, history_of_states

    plain = torch.nn.Embedding(512, 3)
    partitioned = _PartitionedEmbedding(plain.weight.detach().clone())
    assert partitioned.weight.shape == (0,) and partitioned.embedding_dim == 3
    states = torch.tensor([[[1, 2], [SHAPES.mask_code, 5]]])  # (B=1, N=2, T=2)
    want = history_of_states(plain, SHAPES, states, decay=0.5)
    got = history_of_states(partitioned, SHAPES, states, decay=0.5)
    assert got.total.shape == (1, 2, 3)
    assert torch.equal(got.total, want.total) and torch.equal(got.weight, want.weight)
    recorder = HistoryRecorder(partitioned, SHAPES, batch=1, positions=2)
    recorder.record(states[..., 0])
    # position 0 held code 1 once: its mean is code 1's embedding; position 1 held [MASK]: nothing recorded
    reference = recorder.embeddings(torch.tensor([0]))[0]
    torch.testing.assert_close(reference[0], plain.weight.detach()[SHAPES.image_code_offset + 1])
    assert torch.equal(reference[1], torch.zeros(3))
