"""SFT then DPO with TRL + PEFT, configured by YAML recipes; the job runner the Train page starts.

Read top to bottom: :mod:`training.sft` and :mod:`training.dpo` (the two stages,
mirror images), :mod:`training.recipe` (YAML through TRL's config classes),
:mod:`training.hardware` (CPU / GPU / several GPUs, precision),
:mod:`training.runner` (the job: SFT, then DPO from the SFT adapter, progress
files, cancel), :mod:`training.model_card`, :mod:`training.tiny` (the in-process
test model). This package is started as a separate process and reads exported
files; it never imports streamlit or the web layer, and never touches the
database (:func:`r2ta.jobs.sync_run_to_db` mirrors a run folder into it).
"""
