"""The wire contract: topic builders and message models that every process imports.

Nothing here does IO; a message is a frozen, validated value.
"""
