"""One module per pipeline stage, each with one function `run(params, **paths)`: read the stage's inputs,
call the domain modules, write its declared outputs.

Stage scripts in stages/ parse options and call one of these. A stage module imports only what its stage
uses (this file imports nothing), so each stage's `deps:` in dvc.yaml is its script plus the import
closure of its module, and editing one library module reruns only the stages that use it.
"""
