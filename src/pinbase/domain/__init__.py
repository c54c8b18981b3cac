"""Pure rules of pinbase: entities, value types, permissions, batch logic. No I/O here."""
