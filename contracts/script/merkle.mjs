#!/usr/bin/env node
// Builds an OpenZeppelin StandardMerkleTree of reward leaves (address, uint256 cumulative amount), the reference
// implementation that marketplace/rewards/merkle.py is tested against and that RewardDistributor.sol verifies.
//
//   echo '[["0xAbC...", "1000000"], ...]' | node contracts/script/merkle.mjs
//   -> {"root": "0x...", "proofs": [["0x...", ...], ...]}   (one proof per input entry, in input order)
//
// Amounts are decimal strings (JSON numbers lose precision above 2^53). Invalid input exits with status 1 and a
// message on stderr.
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';

const readStdin = async () => {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
};

try {
  const values = JSON.parse(await readStdin());
  if (!Array.isArray(values) || values.length === 0) throw new Error('expected a non-empty JSON array of [address, amount]');
  for (const value of values) {
    if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'string' || typeof value[1] !== 'string') {
      throw new Error(`expected [address, amount_string], got ${JSON.stringify(value)}`);
    }
  }
  const tree = StandardMerkleTree.of(values, ['address', 'uint256']);
  const proofs = values.map((_, i) => tree.getProof(i));
  process.stdout.write(`${JSON.stringify({ root: tree.root, proofs })}\n`);
} catch (error) {
  process.stderr.write(`merkle.mjs: ${error.message}\n`);
  process.exit(1);
}
