// The admin's dispute resolution when the operator key is not the arbiter: the arbiter's own
// wallet sends the prepared resolve(orderId, refundBps) transaction.
(function () {
  const button = document.getElementById("send-resolve");
  const status = document.getElementById("send-resolve-status");
  if (!button) return;
  button.addEventListener("click", async () => {
    const tx = JSON.parse(button.dataset.transaction);
    if (!window.ethereum) {
      status.textContent = "No wallet in this browser: copy the transaction above into the arbiter's wallet.";
      return;
    }
    button.disabled = true;
    try {
      const [account] = await window.ethereum.request({ method: "eth_requestAccounts" });
      const chainId = await window.ethereum.request({ method: "eth_chainId" });
      if (parseInt(chainId, 16) !== parseInt(tx.chainId, 16)) {
        await window.ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId: tx.chainId }] });
      }
      tx.from = account;
      status.textContent = "Confirm in your wallet…";
      const hash = await window.ethereum.request({ method: "eth_sendTransaction", params: [tx] });
      status.textContent = `Sent: ${hash}. The order changes once the chain has it.`;
    } catch (error) {
      status.textContent = error && error.code === 4001 ? "Rejected in the wallet." :
        `The wallet refused: ${(error && error.message) || error}`;
      button.disabled = false;
    }
  });
})();
