"""How auditseal's processes meet the network: TLS for every listening socket, bearer tokens that
fail closed, the Host allow-list, and Kafka clients' security settings (docs/SECURITY.md)."""
