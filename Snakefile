# ECDP reproducibility suite: `snakemake --cores all all` (see README.md).
# `snakemake --cores 1 --report report.html` collects the tables and figures with their captions.
import os

import yaml
from snakemake.utils import min_version, validate

from ecdp.config import coerce_overrides

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


SCHEMA = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
config.update(coerce_overrides(config, yaml.safe_load(open(SCHEMA))))  # nested --config values
# A preset drops a table of config.yaml with `name: null` (presets merge into config.yaml).
config["tables"] = {k: v for k, v in config.get("tables", {}).items() if v is not None}
validate(config, SCHEMA)


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


rule all:
    input:
        all_targets(),
    default_target: True
