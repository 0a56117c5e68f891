"""Property-based tests (hypothesis) over every command's arguments: reliability case 36."""
