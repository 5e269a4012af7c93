"""Training questions with gold supporting sentences, for behaviour cloning and search training.

Modules, one job each:
    gold_questions     the record schema, its JSONL loader and writer, and the HotpotQA adapter
    pydocs_questions   questions generated from the pydocs corpus's own sentences;
                       `citeagent train pydocs-questions`
    leakage            drops generated questions that overlap the pydocs evaluation set
"""
