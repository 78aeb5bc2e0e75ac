"""lib's BERT: parity with transformers' BERT classes on random weights (padding included), exact
round trips, the pretrained all-MiniLM-L6-v2 equal to transformers' on the same files, the
paper's sizes, and the errors a reader meets first."""

import pytest
import torch
from torch.nn import functional as F

from lib.models.bert import (
    IGNORE_INDEX,
    Bert,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    bert_pretraining_loss,
    classification_loss,
    mean_pool,
)
from lib.utils import count_params

transformers = pytest.importorskip("transformers")
from lib.hf.bert import (  # noqa: E402
    bert_config_from_hf,
    bert_from_hf,
    bert_to_hf,
    load_minilm,
    minilm_folder,
    minilm_tokenizer,
)

VOCAB = 99
TOL = 1e-5  # fp32: the two compute the same sums in other orders; differences are ~1e-7


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_bert(cls: str, attn_implementation: str = "sdpa", **overrides):
    """A small transformers BERT of class `cls` with random weights everywhere, norms included."""
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-7,
        num_labels=3,
        attn_implementation=attn_implementation,
        **overrides,
    )
    model = getattr(transformers, cls)(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_weight = "LayerNorm" in name and name.endswith("weight")
            p.normal_(mean=1.0 if is_norm_weight else 0.0, std=0.2)
    return model.eval()


def small_config() -> BertConfig:
    """The book's small BERT over a 99-token vocabulary: [PAD] 0, [CLS] 1, [SEP] 2, [MASK] 3."""
    return BertConfig.preset("small", vocab_size=VOCAB, cls_id=1, sep_id=2, mask_id=3)


def padded_inputs(batch: int = 3, seq: int = 13):
    """Ids, segments and a mask whose rows have 13, 9 and 4 real tokens."""
    ids = torch.randint(0, VOCAB, (batch, seq))
    types = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).clone()
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    return ids, types, mask


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_bert_model_hidden_states_equal_hf_with_padding(attn_implementation):
    hf = random_bert("BertModel", attn_implementation)
    ours = bert_from_hf(hf)
    assert type(ours) is Bert
    ids, types, mask = padded_inputs()
    with torch.no_grad():
        theirs = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        hidden = ours(ids, types, mask)
    real = mask.bool()  # padded positions are computed by both but mean nothing
    assert (hidden - theirs.last_hidden_state)[real].abs().max() <= TOL
    assert (ours.pool(hidden) - theirs.pooler_output).abs().max() <= TOL


def test_pretraining_logits_equal_hf_with_padding():
    hf = random_bert("BertForPreTraining")
    ours = bert_from_hf(hf)
    assert type(ours) is BertForPreTraining
    ids, types, mask = padded_inputs()
    with torch.no_grad():
        theirs = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        mlm, nsp = ours(ids, types, mask)
        predict = torch.rand(ids.shape) < 0.3
        mlm_some, _ = ours(ids, types, mask, predict=predict)
    assert (mlm - theirs.prediction_logits)[mask.bool()].abs().max() <= TOL
    assert (nsp - theirs.seq_relationship_logits).abs().max() <= TOL
    assert torch.equal(mlm_some, mlm[predict])  # only the asked-for rows, the same values


def test_pretraining_loss_equals_hf_loss():
    hf = random_bert("BertForPreTraining")
    ours = bert_from_hf(hf)
    ids, types, mask = padded_inputs()
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, IGNORE_INDEX)
    labels[0, 0] = ids[0, 0]  # at least one masked position
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        theirs = hf(
            input_ids=ids,
            token_type_ids=types,
            attention_mask=mask,
            labels=labels,
            next_sentence_label=nsp,
        ).loss
        loss = bert_pretraining_loss(ours, (ids, types, mask, labels, nsp))
    assert abs(loss - theirs) <= TOL


def test_classification_logits_and_loss_equal_hf():
    hf = random_bert("BertForSequenceClassification")
    ours = bert_from_hf(hf)
    assert type(ours) is BertForSequenceClassification and ours.n_classes == 3
    ids, _, mask = padded_inputs()
    labels = torch.tensor([2, 0, 1])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, labels=labels)
        logits = ours(ids, attention_mask=mask)
        loss = classification_loss(ours, (ids, mask, labels))
    assert (logits - theirs.logits).abs().max() <= TOL
    assert abs(loss - theirs.loss) <= TOL


@pytest.mark.parametrize(
    "cls", ["BertModel", "BertForPreTraining", "BertForSequenceClassification"]
)
def test_round_trip_is_exact(cls):
    hf = random_bert(cls)
    back = bert_to_hf(bert_from_hf(hf))
    assert type(back).__name__ == cls
    theirs, again = hf.state_dict(), back.state_dict()
    assert theirs.keys() == again.keys()
    assert all(torch.equal(theirs[name], again[name]) for name in theirs)
    ours = BertForPreTraining(small_config())
    twice = bert_from_hf(bert_to_hf(ours)).state_dict()
    assert all(torch.equal(tensor, twice[name]) for name, tensor in ours.state_dict().items())


def test_the_masked_lm_head_is_tied_to_the_token_embedding():
    model = bert_from_hf(random_bert("BertForPreTraining"))
    assert model.mlm_head.weight is model.bert.tok_embed.weight


def test_wrong_classes_and_configs_are_one_clear_error():
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2))
    with pytest.raises(TypeError, match="bert_from_hf converts BertModel, BertForPreTraining"):
        bert_from_hf(gpt2)
    with pytest.raises(TypeError, match="model_type 'bert'"):
        bert_config_from_hf(gpt2.config)
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        bert_config_from_hf(transformers.BertConfig(hidden_act="relu"))
    with pytest.raises(TypeError, match="bert_to_hf converts Bert"):
        bert_to_hf(torch.nn.Linear(2, 2))


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="not divisible by n_heads=5"):
        BertConfig(d_model=64, n_heads=5)
    with pytest.raises(ValueError, match="four different ids below vocab_size=50"):
        BertConfig(vocab_size=50)  # [CLS]=101 does not exist in a 50-token vocabulary
    with pytest.raises(KeyError, match="the presets are base, large"):
        BertConfig.preset("huge")


def test_positions_stop_at_max_seq_len():
    model = Bert(small_config())
    assert model(torch.zeros(1, 32, dtype=torch.long)).shape == (1, 32, 128)
    with pytest.raises(ValueError, match="needs positions up to 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_paper_sizes_count_110M_and_340M_parameters():
    with torch.device("meta"):  # shapes only: no memory
        base = Bert(BertConfig.preset("base"))
        large = Bert(BertConfig.preset("large"))
    # The exact counts of transformers' BertModel at these sizes; the paper rounds them.
    assert count_params(base) == 109_482_240
    assert count_params(large) == 335_141_888


def test_bidirectional_every_token_sees_every_other():
    model = Bert(small_config())
    ids = torch.randint(4, VOCAB, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1 - 4) % (VOCAB - 4) + 4  # change only the last token
    with torch.no_grad():
        moved = (model(changed) - model(ids)).abs().amax(-1)[0]
    assert (moved > 0).all()  # a causal model would leave positions 0..8 unchanged


# --- all-MiniLM-L6-v2: real weights, offline -------------------------------------------------

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "这家酒店的服务很好。",
    "Two dogs play in the snow, chasing a red ball across the field!",
]


def test_minilm_embeddings_equal_transformers():
    ours = load_minilm()
    assert count_params(ours) == 22_713_216
    tokenizer = minilm_tokenizer()
    encoded = tokenizer.encode_batch(SENTENCES)
    width = max(len(e.ids) for e in encoded)
    ids = torch.tensor([e.ids + [0] * (width - len(e.ids)) for e in encoded])
    mask = (torch.arange(width) < torch.tensor([len(e.ids) for e in encoded])[:, None]).long()
    reference = transformers.AutoModel.from_pretrained(str(minilm_folder())).eval()
    assert type(reference).__name__ == "BertModel"
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        embed_theirs = F.normalize(mean_pool(theirs, mask), dim=-1)
        embed_ours = F.normalize(mean_pool(ours(ids, attention_mask=mask), mask), dim=-1)
        converted = bert_from_hf(reference)(ids, attention_mask=mask)
    assert (embed_ours - embed_theirs).abs().max() <= TOL
    assert (converted - ours(ids, attention_mask=mask)).abs().max() == 0  # one set of weights
    similarity = embed_ours @ embed_ours.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3  # the two sentences about eating agree
