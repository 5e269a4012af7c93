import os
import tempfile

# Tests never reach a model hub: everything they load is bundled or built from config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A fresh cache home per run, so indexes and converted weights are built by the code under test
# rather than found from an earlier run. CITEAGENT_TEST_HOME reuses one to iterate faster.
os.environ["CITEAGENT_HOME"] = os.environ.get("CITEAGENT_TEST_HOME") or tempfile.mkdtemp(prefix="citeagent-test-home-")
