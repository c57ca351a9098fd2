"""Where the contracts live on the chain the server talks to."""
from django.db import models


class Deployment(models.Model):
    """One deployed contract. Its block hash proves, at every start, that the chain still has it."""

    chain_id = models.BigIntegerField()
    contract = models.CharField(max_length=64)
    address = models.CharField(max_length=42)  # checksummed
    tx_hash = models.CharField(max_length=66)
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    deployed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "contract"], name="one_deployment_per_contract")
        ]

    def __str__(self):
        return f"{self.contract} at {self.address} (chain {self.chain_id})"
