"""Short descriptions of the rugs.fun feed's known events and fields, for the catalog's search index.

Written from what the project knows of the feed (the recordings, earlier recorders' code); the
catalog itself, not this module, says what the feed holds: an event or field missing here is still
catalogued and indexed, only without a description.
"""

from __future__ import annotations

EVENTS = {
    "gameStateUpdate": "the game state broadcast: one per tick (~250 ms) while a game runs, every 100 ms of the "
    "cooldown between games; price, tick count, phase (active, rugged, cooldown, presale), leaderboard, "
    "game history with sidebets and provably fair seeds, rug pool, connected players",
    "gameStatePlayerUpdate": "logged-in player's per-tick update: their leaderboard entry, rug pool entries, trades",
    "playerUpdate": "logged-in player's own account state: cash balance, position quantity, average cost, "
    "cumulative profit and loss (pnl), total invested, sidebets, short position, level",
    "standard/newTrade": "a public trade: a player's buy, sell, short open or short close, with price, tick, "
    "amount in SOL, quantity, leverage and coin",
    "newSideBet": "a sidebet placed by a player: a bet that the game rugs within the next 40 ticks, paying 5x",
    "currentSidebet": "the logged-in player's active sidebet",
    "currentSidebetResult": "the result and payout of the logged-in player's sidebet",
    "sidebetEventUpdate": "sidebet event (promotion) state",
    "newChatMessage": "a chat message: username, message text, level, role, reply",
    "chatHistory": "the chat's recent messages, sent on connect",
    "goldenHourUpdate": "golden hour promotion state",
    "goldenHourDrawing": "golden hour prize drawing",
    "battleEventUpdate": "battle event (tournament) state: leaderboard, queue, schedule",
    "rugRoyaleUpdate": "rug royale tournament state: events, prizes, history",
    "maintenanceUpdate": "server maintenance notice: reboots announced, with a message",
    "usernameStatus": "whether the logged-in player has a username",
    "playerLeaderboardPosition": "the logged-in player's rank on the leaderboard",
    "leaderboardData": "the leaderboard the client asked for: players ranked by profit",
    "authenticate": "sent by the client: log in",
    "getLeaderboard": "sent by the client: ask for the leaderboard",
    "buyOrder": "sent by the client: buy",
    "sellOrder": "sent by the client: sell",
    "requestSidebet": "sent by the client: place a sidebet",
    "rugpassStatus": "the player's rug pass status",
    "inboxMessages": "the player's inbox messages",
    "playerCosmetics": "the player's cosmetics",
    "mutedPlayers": "players the logged-in player muted in chat",
}

# by the path's last name (any event), or by "event:path" where the meaning is specific
FIELDS = {
    "price": "current price multiplier of the game (starts at 1.0; the crash price at the rug)",
    "tickCount": "the game's tick number; at the rug, the rug tick",
    "tickIndex": "the tick the trade happened at",
    "active": "the game is running (ticks)",
    "rugged": "the game has rugged (crashed): the rug happened",
    "cooldownTimer": "milliseconds until the next game starts (counts down by 100 between games)",
    "cooldownPaused": "the cooldown countdown is paused",
    "allowPreRoundBuys": "presale: buys and sidebets allowed before tick 0",
    "gameId": "the game's id (YYYYMMDD-hex, UTC date)",
    "leaderboard": "players ranked by profit in this game",
    "pnl": "profit and loss",
    "pnlPercent": "profit and loss in percent",
    "regularPnl": "profit and loss from regular trades",
    "sidebetPnl": "profit and loss from sidebets",
    "shortPnl": "profit and loss from shorts",
    "positionQty": "tokens held (position quantity)",
    "avgCost": "average cost of the position",
    "totalInvested": "SOL invested",
    "cash": "SOL balance of the player",
    "cumulativePnL": "profit and loss over all games",
    "level": "the player's level",
    "username": "the player's name",
    "gameHistory": "the last 10 finished games, newest first: rug, peak, prices, sidebets, revealed seed",
    "globalSidebets": "sidebets placed and paid in the finished game",
    "betAmount": "sidebet stake in SOL",
    "xPayout": "sidebet payout multiple (5x)",
    "payout": "sidebet payout",
    "startedAtTick": "tick the sidebet was placed at",
    "end": "last tick the sidebet covers (start + 40)",
    "endTick": "last tick the sidebet covers",
    "peakMultiplier": "the game's highest price",
    "prices": "price of every tick of the game",
    "partialPrices": "the last 5 ticks' prices, keyed by tick",
    "provablyFair": "provably fair: server seed hash before the game, seed revealed after",
    "serverSeedHash": "sha256 of the server seed, announced before the game",
    "serverSeed": "the server seed revealed after the game (sha256 gives the hash)",
    "connectedPlayers": "players connected to the server",
    "rugpool": "the rug pool: instarug count, threshold, amount",
    "tradeCount": "trades in this game so far",
    "type": "kind: buy, sell, short_open, short_close; sidebet placed or payout",
    "amount": "amount in SOL",
    "qty": "quantity of tokens",
    "leverage": "leverage of the buy",
    "coin": "the coin traded",
    "bonusPortion": "part of the amount paid from bonus balance",
    "realPortion": "part of the amount paid from real balance",
    "sideBet": "the player's sidebet in this game",
    "sidebets": "the player's sidebets",
    "sidebetActive": "the player has an active sidebet",
    "shortPosition": "the player's short position",
    "message": "text of the message",
    "timestamp": "time in milliseconds since 1970",
    "gameVersion": "version of the game's rules",
    "averageMultiplier": "average peak multiplier of recent games",
    "highestToday": "highest multiplier of the day",
}


def event_description(event: str) -> str:
    return EVENTS.get(event, "")


def field_description(event: str, path: str) -> str:
    leaf = path.rstrip("[]").replace("[]", ".").split(".")[-1] if path else ""
    return FIELDS.get(f"{event}:{path}") or FIELDS.get(leaf, "")
