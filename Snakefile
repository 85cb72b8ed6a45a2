# ECDP reproducibility suite: `snakemake --cores all all` (see README.md).
# `snakemake --cores 1 --report report.html` collects the tables and figures with their captions.
import os

import yaml
from snakemake.utils import min_version

from suite.run import prepare_config

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


SCHEMA_PATH = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
SCHEMA = yaml.safe_load(open(SCHEMA_PATH))
config.update(prepare_config(config, SCHEMA_PATH))  # typed, checked, defaults filled


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/study.smk"
include: "workflow/rules/frontier.smk"


# Seconds-long bookkeeping runs on the submitting host, never queued (each SLURM job costs
# 20-30 s of start-up); so do the downloads, since compute nodes often have no network.
localrules:
    all,
    fetch_weights,
    prepare_dataset,
    degrade,
    aggregate,
    aggregate_timing,
    table,
    crop_grid,
    figure8,
    quality_vs_cost,
    sampling_report,
    sampling_study,
    frontier_report,
    frontier,
    distilled,


rule all:
    input:
        all_targets(),
    default_target: True
