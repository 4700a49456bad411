"""A small retrieval set: documents on ten everyday topics and one query per topic.

Variant gates check that an optimized embedding model ranks these documents as the fp32 model does
(top-10 agreement), and the demo runs a semantic search over them whose ranking a person can judge
at a glance: each query's three documents of its own topic belong at the top.
"""

from __future__ import annotations

DOCUMENTS = (
    # cooking
    "Simmer the tomato sauce for twenty minutes, then stir in fresh basil.",
    "Knead the bread dough until it is smooth and let it rise for an hour.",
    "A sharp chef's knife makes chopping onions faster and safer.",
    # space
    "The rover collected rock samples from the floor of a crater on Mars.",
    "Astronomers detected water vapour in the atmosphere of a distant exoplanet.",
    "The rocket's second stage reached orbit eight minutes after launch.",
    # football
    "The striker scored twice in the second half to win the match.",
    "The goalkeeper saved a penalty in the final minute of extra time.",
    "The club signed a young midfielder on a five-year contract.",
    # programming
    "Python raises a KeyError when a dictionary lookup misses.",
    "Use git rebase to replay your commits on top of the main branch.",
    "The compiler reported a type error on line 42 of the parser.",
    # health
    "Regular exercise lowers blood pressure and improves sleep.",
    "Drink plenty of water and rest if you have a fever.",
    "The vaccine trial showed strong protection against severe illness.",
    # money
    "The central bank raised interest rates to curb inflation.",
    "Diversifying your portfolio reduces the risk of large losses.",
    "Mortgage payments went up after the fixed-rate period ended.",
    # travel
    "The night train from Vienna to Venice crosses the Alps.",
    "Pack light and keep your passport in your carry-on bag.",
    "The old town's narrow streets are best explored on foot.",
    # music
    "The orchestra played Beethoven's ninth symphony to a full hall.",
    "She practises scales on the piano for an hour every morning.",
    "The band's new album mixes jazz harmonies with electronic beats.",
    # weather
    "Heavy snow is expected in the mountains over the weekend.",
    "A heatwave pushed temperatures above forty degrees.",
    "Thunderstorms and strong winds will move in from the west tonight.",
    # pets
    "Our puppy learned to sit and stay in just one week.",
    "Cats often sleep for more than twelve hours a day.",
    "Feed your goldfish small amounts once or twice a day.",
)

QUERIES = (
    "How do I make pasta sauce?",
    "news about planets and space missions",
    "Who won the soccer game?",
    "fixing bugs in my code",
    "How can I stay healthy?",
    "Why are loans getting more expensive?",
    "tips for a trip to Italy",
    "classical concerts and musicians",
    "Will it rain or snow this week?",
    "training a dog",
)
TOPICS = (
    "cooking", "space", "football", "programming", "health", "money", "travel", "music",
    "weather", "pets",
)
DOCUMENTS_PER_TOPIC = 3


def topic_of(document: int) -> str:
    """The topic a document was written for; query ``i`` was written for topic ``i``."""
    return TOPICS[document // DOCUMENTS_PER_TOPIC]
