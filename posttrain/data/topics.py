"""Small topics with plain on-topic sentences, the raw material of the builtin instruction-following data.

Every sentence is short, ASCII (the character tokenizer's alphabet), free of commas, and ends with a full
stop, so that any constraint the generator asks for can be met by choosing, ordering and formatting them.
Each topic's keywords appear literally in at least two of its sentences.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str  # as it reads in a request: "Write a short note about {name}."
    keywords: tuple[str, ...]
    sentences: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic(
        "the sea",
        ("sea", "waves", "salt"),
        (
            "The sea covers most of our planet.",
            "Waves roll onto the shore all day.",
            "Sea water tastes of salt.",
            "Many fish live deep in the sea.",
            "Strong winds make the waves grow tall.",
            "The salt in the sea comes from rocks.",
        ),
    ),
    Topic(
        "bees",
        ("bees", "honey", "flowers"),
        (
            "Bees carry pollen between flowers.",
            "Bees make honey from the nectar of flowers.",
            "A hive can hold thousands of bees.",
            "Honey keeps for a very long time.",
            "Flowers need bees to make seeds.",
            "The queen lays all the eggs in the hive.",
        ),
    ),
    Topic(
        "volcanoes",
        ("volcano", "lava", "ash"),
        (
            "A volcano forms where hot rock rises.",
            "Lava flows slowly down the hill.",
            "Ash from a volcano can fill the sky.",
            "Some islands were built by lava.",
            "Fine ash makes the soil rich.",
            "Scientists watch each volcano for signs of change.",
        ),
    ),
    Topic(
        "the moon",
        ("moon", "tides", "craters"),
        (
            "The moon circles the Earth once a month.",
            "Its pull on the oceans makes the tides.",
            "The moon has many deep craters.",
            "People first walked on the moon in 1969.",
            "Tides rise and fall twice a day.",
            "Craters form when rocks hit the surface.",
        ),
    ),
    Topic(
        "bread",
        ("bread", "flour", "oven"),
        (
            "Bread is made from flour and water.",
            "Yeast makes the dough rise.",
            "A hot oven gives bread a golden crust.",
            "Fresh bread smells warm and sweet.",
            "Flour comes from ground wheat.",
            "Bakers wake early to fill the oven.",
        ),
    ),
    Topic(
        "rain",
        ("rain", "clouds", "puddles"),
        (
            "Rain falls when clouds grow heavy.",
            "Clouds are made of tiny drops of water.",
            "Children love to jump in puddles.",
            "Plants drink the rain through their roots.",
            "Puddles dry up when the sun returns.",
            "Dark clouds often bring a storm.",
        ),
    ),
    Topic(
        "trains",
        ("train", "tracks", "station"),
        (
            "A train runs on steel tracks.",
            "The station is busy in the morning.",
            "A fast train can cross a country in hours.",
            "Tracks must be checked for cracks.",
            "People wait on the platform at the station.",
            "The first train used steam power.",
        ),
    ),
    Topic(
        "owls",
        ("owls", "night", "feathers"),
        (
            "Owls hunt mostly at night.",
            "Soft feathers let owls fly without sound.",
            "An owl can turn its head very far.",
            "At night owls hear tiny mice move.",
            "Their feathers keep them warm in winter.",
            "Owls swallow small prey whole.",
        ),
    ),
    Topic(
        "deserts",
        ("desert", "sand", "cactus"),
        (
            "A desert gets very little rain.",
            "Sand dunes move with the wind.",
            "A cactus stores water in its stem.",
            "Desert nights can be very cold.",
            "Camels cross the sand for days.",
            "The cactus has spines instead of leaves.",
        ),
    ),
    Topic(
        "chess",
        ("chess", "king", "board"),
        (
            "Chess is played on a square board.",
            "Each player starts with sixteen pieces.",
            "The game ends when the king is trapped.",
            "The board has sixty four squares.",
            "Chess teaches patience and planning.",
            "A king can move one square at a time.",
        ),
    ),
    Topic(
        "tea",
        ("tea", "leaves", "cup"),
        (
            "Tea is made from dried leaves.",
            "A warm cup of tea can calm the mind.",
            "Green tea and black tea come from one plant.",
            "The leaves are picked by hand.",
            "Some people add milk to the cup.",
            "Tea has been enjoyed for thousands of years.",
        ),
    ),
    Topic(
        "forests",
        ("forest", "trees", "moss"),
        (
            "A forest is home to many animals.",
            "Tall trees block most of the sunlight.",
            "Moss grows on damp rocks and logs.",
            "Trees make the air fresh and clean.",
            "The forest floor is soft with fallen leaves.",
            "Moss keeps the ground wet.",
        ),
    ),
)
