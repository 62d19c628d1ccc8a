"""Common Norwegian given names and surnames (after SSB's name statistics), for demo data.

Frequencies are not modelled beyond the rough ordering; some common immigrant names are
included because they are common in Norway too.
"""

from __future__ import annotations

FEMALE_GIVEN: tuple[str, ...] = (
    "Anne", "Inger", "Kari", "Marit", "Ingrid", "Liv", "Eva", "Berit", "Astrid", "Bjørg",
    "Hilde", "Anna", "Solveig", "Marianne", "Randi", "Ida", "Nina", "Maria", "Elisabeth",
    "Kristin", "Tone", "Silje", "Hanne", "Camilla", "Ragnhild", "Gunn", "Heidi", "Wenche",
    "Turid", "Nora", "Emma", "Sara", "Sofie", "Olivia", "Ingeborg", "Maja", "Emilie", "Thea",
    "Julie", "Ella", "Leah", "Frida", "Linnea", "Mari", "Karin", "Tove", "Grete", "Siri",
    "Lene", "Monica", "Kjersti", "Aud", "Sigrid", "Ellen", "Tonje", "Vilde", "Hedda", "Aurora",
    "Amalie", "Mia", "Agnes", "Åse", "Unni", "Ruth", "Else", "Gerd", "Synnøve", "Marte",
    "Fatima", "Aisha", "Anna Maria", "Kari Anne",
)

MALE_GIVEN: tuple[str, ...] = (
    "Jan", "Per", "Bjørn", "Ole", "Lars", "Kjell", "Knut", "Arne", "Svein", "Thomas", "Hans",
    "Geir", "Tor", "Morten", "Terje", "Odd", "Erik", "Martin", "Andreas", "John", "Anders",
    "Rune", "Trond", "Tore", "Jon", "Harald", "Olav", "Magnus", "Kristian", "Daniel",
    "Stian", "Espen", "Øyvind", "Eirik", "Henrik", "Jonas", "Sindre", "Kristoffer",
    "Marius", "Nils", "Jakob", "Emil", "Noah", "William", "Oskar", "Lucas", "Filip",
    "Aksel", "Isak", "Mathias", "Sverre", "Einar", "Gunnar", "Leif", "Rolf", "Helge",
    "Steinar", "Dag", "Frode", "Ivar", "Sigurd", "Håkon", "Vegard", "Even", "Tobias",
    "Mohammad", "Ali", "Piotr", "Jan Erik", "Ole Martin",
)

SURNAMES: tuple[str, ...] = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
    "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen",
    "Lund", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand", "Solberg",
    "Svendsen", "Eide", "Knutsen", "Martinsen", "Paulsen", "Bakken", "Kristoffersen",
    "Mathisen", "Lie", "Amundsen", "Nguyen", "Rasmussen", "Ali", "Lunde", "Solheim", "Berge",
    "Moe", "Nygård", "Bakke", "Kristensen", "Fredriksen", "Holm", "Lien", "Hauge",
    "Christensen", "Andresen", "Nielsen", "Knudsen", "Evensen", "Sæther", "Aas", "Myhre",
    "Hanssen", "Ahmed", "Haugland", "Thomassen", "Sivertsen", "Simonsen", "Danielsen",
    "Berntsen", "Sandvik", "Rønning", "Arnesen", "Antonsen", "Næss", "Vik", "Haug",
    "Ellingsen", "Thorsen", "Edvardsen", "Birkeland", "Isaksen", "Gulbrandsen", "Ruud",
    "Aasen", "Strøm", "Myklebust", "Tangen", "Ødegård", "Eliassen", "Helland", "Bøe",
    "Jenssen", "Aune", "Mikkelsen", "Tveit", "Brekke", "Abrahamsen", "Madsen", "Khan",
    "Hussain", "Nowak", "Kowalski",
)
