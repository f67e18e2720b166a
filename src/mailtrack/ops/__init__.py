"""Operations: health, metrics, queue control, retention, backup, logs."""
