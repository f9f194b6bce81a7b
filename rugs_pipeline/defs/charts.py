"""Small pictures for asset metadata: a day's games at a glance in the Dagster UI."""

import base64
import io

import pyarrow as pa
import pyarrow.compute as pc

MAX_GAMES = 40  # the most recent ones; a day holds hundreds, a picture shows a handful


def price_paths_png(game_tick: pa.Table) -> bytes | None:
    """Price path of each game (log scale), rug ticks marked; None when there are no ticks."""
    if game_tick.num_rows == 0:
        return None
    # imported here: matplotlib costs ~0.8 s at start-up, and every Dagster run process imports this module
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory only
    import matplotlib.pyplot as plt

    table = game_tick.select(["game_id", "tick", "price", "is_rug_tick", "ts"]).sort_by([("ts", "ascending")])
    games = pc.unique(table["game_id"]).to_pylist()[-MAX_GAMES:]
    table = table.filter(pc.is_in(table["game_id"], pa.array(games, table["game_id"].type)))
    fig, ax = plt.subplots(figsize=(7, 3), dpi=80)
    # fixed margins: fitting them to the labels (tight_layout) took longer than drawing the lines
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.9)
    for game in games:
        rows = table.filter(pc.equal(table["game_id"], game)).sort_by("tick")
        ticks, prices = rows["tick"].to_pylist(), rows["price"].to_pylist()
        (line,) = ax.plot(ticks, prices, linewidth=0.8)
        rug = rows.filter(pc.equal(rows["is_rug_tick"], True))
        if rug.num_rows:
            ax.plot(rug["tick"].to_pylist(), [max(prices)], "v", color=line.get_color(), markersize=4)
    ax.set_yscale("log")
    ax.set_xlabel("tick")
    ax.set_ylabel("price (x)")
    ax.set_title(f"{len(games)} games (rug ticks marked at each game's peak)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def games_png(games: pa.Table) -> bytes | None:
    """A day's games: the distribution of rug ticks (R), and each game's peak multiplier in start order
    (log scale); None when no game has either."""
    rug_ticks = [t for t in games["tick"].to_pylist() if t is not None]
    ordered = games.sort_by([("start_ts", "ascending")]) if "start_ts" in games.column_names else games
    peaks = [p for p in ordered["peak_multiplier"].to_pylist() if p is not None]
    if not rug_ticks and not peaks:
        return None
    import matplotlib  # imported here, as in price_paths_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.88, wspace=0.28)
    left.hist(rug_ticks, bins=min(30, max(5, len(rug_ticks) // 3)), color="tab:red", edgecolor="white")
    left.set_xlabel("rug tick (R)")
    left.set_ylabel("games")
    left.set_title(f"rug ticks of {len(rug_ticks)} games", fontsize=9)
    right.bar(range(len(peaks)), peaks, width=0.8, color="tab:green")
    right.set_yscale("log")
    right.set_xlabel("game (in start order)")
    right.set_ylabel("peak (x)")
    right.set_title(f"peak multipliers, highest {max(peaks):.2f}x" if peaks else "no peaks", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
