"""The Discord adapter's parts. Import the adapter from `adapters.discord_bot`.

    constants.py  Discord's numbers and our custom_id template
    words.py      every sentence a Discord user reads that is not in bot/messages.py
    ui.py         the client, the slash commands, autocomplete and the persistent buttons
    sink.py       progress and delivery from the stored job (REST only, survives restarts)

(The package is `adapters.discord`; absolute imports keep `import discord` the library.)
"""
