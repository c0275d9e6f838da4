"""The drivers: each composes the building blocks (data, models, optim, sparsity,
quant, sharpness, parallel, train) into one experiment that writes a run folder.

- :mod:`~flatjax.recipes.finetune`: fine-tuning (Adam, SAM and its variants,
  a fixed or a learned pruning mask, SWA) — ``flatjax train``;
- :mod:`~flatjax.recipes.imp`: iterative magnitude pruning with rewinding;
- :mod:`~flatjax.recipes.tickets`: retraining masks from other runs;
- :mod:`~flatjax.recipes.oneshot`: one-shot magnitude pruning curves;
- :mod:`~flatjax.recipes.cofi`: CoFi structured pruning with distillation;
- :mod:`~flatjax.recipes.quantize`: int8 post-training quantization;
- :mod:`~flatjax.recipes.evaluate`: scoring a saved (or int8) model;
- :mod:`~flatjax.recipes.sharpness`: flatness measurements of a run;
- :mod:`~flatjax.recipes.compare`: the main job, Adam against SAM through every
  compression.

Only the CLI imports this layer; nothing in the building blocks imports it.
"""
