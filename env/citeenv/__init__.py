"""citeenv: a text browser with WebGPT's command set, behind the Gymnasium API.

    import gymnasium
    import citeenv  # registers "citeenv/TextBrowser-v0"

    env = gymnasium.make("citeenv/TextBrowser-v0", corpus="pydocs", dataset="corpora/pydocs_qa.jsonl")
    obs, info = env.reset(seed=0)              # a question drawn from the data set
    obs, reward, terminated, truncated, info = env.step("Search json dumps")

`gymnasium.make("citeenv:TextBrowser-v0", ...)` imports this package itself. The contract (the
commands, the observation, the info keys) is docs/ENV_SPEC.md.
"""
ENV_ID = "citeenv/TextBrowser-v0"

try:
    from gymnasium.envs.registration import register
except ModuleNotFoundError:  # the pydocs builder's helper process imports the standard library only
    pass
else:
    register(id=ENV_ID, entry_point="citeenv.gym_env:make_env")
