"""pyinfra-iluvatar check: which hosts are ready for Ilúvatar."""
