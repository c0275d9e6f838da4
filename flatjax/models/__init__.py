"""Flax BERT and Hugging Face checkpoint conversion."""

from flatjax.models.bert import (DTYPES, MODEL_INPUTS, BertConfig, BertForQuestionAnswering,
                                 BertForSequenceClassification, BertModel)
from flatjax.models.pretrained import (Pretrained, build_module, from_pretrained, init_params,
                                       load_tokenizer, resolve_model_dir, save_pretrained)
