# Every model the run trains (RUN.models), once per training seed: models/<model>/train<seed>/.
# The science each script takes is the model's params (suite.run); resources.smk sizes the jobs.
MODEL = "results/{dataset}/x{scale}/models/{model}/train{train_seed}/model.pt"
MODEL_LOG = "logs/train/{dataset}_x{scale}_{model}_train{train_seed}.log"
MANIFEST = "resources/datasets/{dataset}/manifest.json"


rule train_rrdb:
    input:
        dataset=MANIFEST,
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("train_rrdb")),
    params:
        net=params_of("net"),
        cfg=params_of("cfg"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_rrdb.py"


rule train_ecdp_stage1:
    input:
        dataset=MANIFEST,
        upstream=upstream,
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("train_ecdp_stage1")),
    params:
        model=params_of("model"),
        cfg=params_of("cfg"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp.py"


rule train_ecdp_stage2:
    input:
        dataset=MANIFEST,
        upstream=upstream,
        weights="resources/weights/weights.json",
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("train_ecdp_stage2")),
    params:
        cfg=params_of("cfg"),
        k=params_of("k"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp.py"


rule train_ecdp_distill:
    input:
        dataset=MANIFEST,
        upstream=upstream,
        weights="resources/weights/weights.json",
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("train_ecdp_distill")),
    params:
        cfg=params_of("cfg"),
        nfe=params_of("nfe"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp_distill.py"


rule train_srdiff:
    input:
        dataset=MANIFEST,
        upstream=upstream,
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("train_srdiff")),
    params:
        net=params_of("net"),
        cfg=params_of("cfg"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_srdiff.py"


rule train_sr3:
    input:
        dataset=MANIFEST,
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("train_sr3")),
    params:
        sr3=params_of("sr3"),
        cfg=params_of("cfg"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_sr3.py"


rule finetune_iq:
    input:
        dataset=MANIFEST,
        upstream=upstream,
        weights="resources/weights/weights.json",
    output:
        MODEL,
    log:
        MODEL_LOG,
    wildcard_constraints:
        model=_alternatives(RUN.models_of("finetune_iq")),
    params:
        kind=params_of("kind"),
        cfg=params_of("cfg"),
        seed=lambda w: int(w.train_seed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/finetune_iq.py"
