"""The deploy into the TOQ account (scripts/deploy_lambdas.sh; docs/contract.md §11)."""
