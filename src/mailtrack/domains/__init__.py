"""Sending domains: ownership per account, DKIM keys and selectors, the DNS records to publish and
their checks, the aligned return-path host, and the signer the delivery pipeline uses."""
