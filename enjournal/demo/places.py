"""Norwegian places for the demo population: municipalities (2024 numbering) and health trusts.

Kommunenummer and names are the real 2024 ones (after the 2024 county split of Viken,
Vestfold og Telemark and Troms og Finnmark; Ålesund became 1508). Populations are rounded
approximations of 1 January 2024 and only weight the sampling. Postal code and post town are one
real example address area per municipality (its centre), not a full postal register.
"""

from __future__ import annotations

from typing import NamedTuple


class Municipality(NamedTuple):
    code: str  # kommunenummer, Volven 3402
    name: str
    population: int  # approximate, 1 Jan 2024
    postal_code: str
    post_town: str
    trust: str  # key into HEALTH_TRUSTS: the local hospital trust (helseforetak)


MUNICIPALITIES: tuple[Municipality, ...] = (
    Municipality("0301", "Oslo", 717_700, "0150", "OSLO", "ous"),
    Municipality("4601", "Bergen", 291_900, "5003", "BERGEN", "bergen"),
    Municipality("5001", "Trondheim", 214_600, "7010", "TRONDHEIM", "stolav"),
    Municipality("1103", "Stavanger", 148_700, "4005", "STAVANGER", "stavanger"),
    Municipality("3201", "Bærum", 131_000, "1337", "SANDVIKA", "vv"),
    Municipality("4204", "Kristiansand", 116_100, "4610", "KRISTIANSAND S", "sshf"),
    Municipality("3301", "Drammen", 103_300, "3015", "DRAMMEN", "vv"),
    Municipality("3203", "Asker", 97_900, "1383", "ASKER", "vv"),
    Municipality("3205", "Lillestrøm", 92_000, "2000", "LILLESTRØM", "ahus"),
    Municipality("3107", "Fredrikstad", 84_900, "1606", "FREDRIKSTAD", "so"),
    Municipality("1108", "Sandnes", 83_300, "4306", "SANDNES", "stavanger"),
    Municipality("5501", "Tromsø", 78_700, "9008", "TROMSØ", "unn"),
    Municipality("3907", "Sandefjord", 65_700, "3210", "SANDEFJORD", "siv"),
    Municipality("3207", "Nordre Follo", 62_500, "1400", "SKI", "ahus"),
    Municipality("3105", "Sarpsborg", 59_400, "1706", "SARPSBORG", "so"),
    Municipality("3905", "Tønsberg", 58_300, "3110", "TØNSBERG", "siv"),
    Municipality("1508", "Ålesund", 58_000, "6002", "ÅLESUND", "hmr"),
    Municipality("4003", "Skien", 56_200, "3724", "SKIEN", "st"),
    Municipality("1804", "Bodø", 53_700, "8006", "BODØ", "nlsh"),
    Municipality("3103", "Moss", 51_100, "1530", "MOSS", "so"),
    Municipality("3222", "Lørenskog", 48_300, "1470", "LØRENSKOG", "ahus"),
    Municipality("3909", "Larvik", 48_000, "3256", "LARVIK", "siv"),
    Municipality("4203", "Arendal", 46_000, "4836", "ARENDAL", "sshf"),
    Municipality("3118", "Indre Østfold", 45_900, "1830", "ASKIM", "so"),
    Municipality("1149", "Karmøy", 43_200, "4250", "KOPERVIK", "fonna"),
    Municipality("3209", "Ullensaker", 42_500, "2050", "JESSHEIM", "ahus"),
    Municipality("4626", "Øygarden", 39_800, "5353", "STRAUME", "bergen"),
    Municipality("1106", "Haugesund", 38_100, "5527", "HAUGESUND", "fonna"),
    Municipality("4001", "Porsgrunn", 37_200, "3915", "PORSGRUNN", "st"),
    Municipality("3411", "Ringsaker", 35_400, "2380", "BRUMUNDDAL", "si"),
    Municipality("3403", "Hamar", 32_600, "2317", "HAMAR", "si"),
    Municipality("1506", "Molde", 32_500, "6413", "MOLDE", "hmr"),
    Municipality("3101", "Halden", 31_700, "1771", "HALDEN", "so"),
    Municipality("3305", "Ringerike", 31_500, "3510", "HØNEFOSS", "vv"),
    Municipality("3407", "Gjøvik", 30_900, "2815", "GJØVIK", "si"),
    Municipality("4627", "Askøy", 30_400, "5300", "KLEPPESTØ", "bergen"),
    Municipality("4631", "Alver", 29_900, "5914", "ISDALSTØ", "bergen"),
    Municipality("3405", "Lillehammer", 28_900, "2609", "LILLEHAMMER", "si"),
    Municipality("3303", "Kongsberg", 28_300, "3616", "KONGSBERG", "vv"),
    Municipality("1124", "Sola", 28_200, "4050", "SOLA", "stavanger"),
    Municipality("3312", "Lier", 28_100, "3400", "LIER", "vv"),
    Municipality("3901", "Horten", 27_900, "3183", "HORTEN", "siv"),
    Municipality("3240", "Eidsvoll", 27_200, "2080", "EIDSVOLL", "ahus"),
    Municipality("3911", "Færder", 27_000, "3140", "NØTTERØY", "siv"),
    Municipality("4624", "Bjørnafjorden", 26_100, "5200", "OS", "bergen"),
    Municipality("3903", "Holmestrand", 25_900, "3080", "HOLMESTRAND", "siv"),
    Municipality("1833", "Rana", 26_300, "8622", "MO I RANA", "helgeland"),
    Municipality("5035", "Stjørdal", 25_000, "7500", "STJØRDAL", "hnt"),
    Municipality("5503", "Harstad", 24_900, "9405", "HARSTAD", "unn"),
    Municipality("3232", "Nittedal", 25_200, "1482", "NITTEDAL", "ahus"),
    Municipality("1505", "Kristiansund", 24_200, "6509", "KRISTIANSUND N", "hmr"),
    Municipality("3228", "Nes", 24_100, "2150", "ÅRNES", "ahus"),
    Municipality("4202", "Grimstad", 24_000, "4876", "GRIMSTAD", "sshf"),
    Municipality("5006", "Steinkjer", 24_300, "7713", "STEINKJER", "hnt"),
    Municipality("4205", "Lindesnes", 23_900, "4515", "MANDAL", "sshf"),
    Municipality("3218", "Ås", 22_000, "1430", "ÅS", "ahus"),
    Municipality("4647", "Sunnfjord", 22_100, "6800", "FØRDE", "forde"),
    Municipality("1806", "Narvik", 21_800, "8514", "NARVIK", "unn"),
    Municipality("3413", "Stange", 21_400, "2335", "STANGE", "si"),
    Municipality("5601", "Alta", 21_300, "9510", "ALTA", "finnmark"),
    Municipality("3420", "Elverum", 21_600, "2406", "ELVERUM", "si"),
    Municipality("5037", "Levanger", 20_500, "7600", "LEVANGER", "hnt"),
    Municipality("3314", "Øvre Eiker", 20_200, "3300", "HOKKSUND", "vv"),
    Municipality("3212", "Nesodden", 20_200, "1450", "NESODDTANGEN", "ahus"),
    Municipality("1120", "Klepp", 20_200, "4352", "KLEPPE", "stavanger"),
    Municipality("1121", "Time", 19_500, "4340", "BRYNE", "stavanger"),
    Municipality("3216", "Vestby", 19_000, "1540", "VESTBY", "ahus"),
    Municipality("4614", "Stord", 19_000, "5411", "STORD", "fonna"),
    Municipality("3224", "Rælingen", 18_900, "2008", "FJERDINGBY", "ahus"),
    Municipality("1119", "Hå", 19_300, "4365", "NÆRBØ", "stavanger"),
    Municipality("5059", "Orkland", 18_700, "7300", "ORKANGER", "stolav"),
    Municipality("3226", "Aurskog-Høland", 18_000, "1940", "BJØRKELANGEN", "ahus"),
    Municipality("3401", "Kongsvinger", 18_000, "2211", "KONGSVINGER", "si"),
    Municipality("5028", "Melhus", 17_000, "7224", "MELHUS", "stolav"),
    Municipality("4602", "Kinn", 17_200, "6900", "FLORØ", "forde"),
    Municipality("3214", "Frogn", 16_200, "1440", "DRØBAK", "ahus"),
    Municipality("4621", "Voss", 16_100, "5700", "VOSS", "bergen"),
    Municipality("4223", "Vennesla", 15_400, "4700", "VENNESLA", "sshf"),
    Municipality("5038", "Verdal", 15_200, "7650", "VERDAL", "hnt"),
    Municipality("5007", "Namsos", 15_100, "7800", "NAMSOS", "hnt"),
    Municipality("5530", "Senja", 14_700, "9300", "FINNSNES", "unn"),
    Municipality("5031", "Malvik", 14_500, "7550", "HOMMELVIK", "stolav"),
    Municipality("5603", "Hammerfest", 11_400, "9600", "HAMMERFEST", "finnmark"),
    Municipality("5605", "Sør-Varanger", 10_000, "9900", "KIRKENES", "finnmark"),
)

BY_CODE: dict[str, Municipality] = {m.code: m for m in MUNICIPALITIES}


class HealthTrust(NamedTuple):
    key: str
    name: str  # helseforetak
    region: str  # key into REGIONS
    municipality: str  # kommunenummer of the main hospital
    hospital: str  # the main hospital site, used in department names


REGIONS: dict[str, str] = {
    "sorost": "Helse Sør-Øst RHF",
    "vest": "Helse Vest RHF",
    "midt": "Helse Midt-Norge RHF",
    "nord": "Helse Nord RHF",
}

HEALTH_TRUSTS: tuple[HealthTrust, ...] = (
    HealthTrust("ous", "Oslo universitetssykehus HF", "sorost", "0301", "Ullevål"),
    HealthTrust("ahus", "Akershus universitetssykehus HF", "sorost", "3222", "Nordbyhagen"),
    HealthTrust("vv", "Vestre Viken HF", "sorost", "3301", "Drammen sykehus"),
    HealthTrust("so", "Sykehuset Østfold HF", "sorost", "3105", "Kalnes"),
    HealthTrust("siv", "Sykehuset i Vestfold HF", "sorost", "3905", "Tønsberg"),
    HealthTrust("st", "Sykehuset Telemark HF", "sorost", "4003", "Skien"),
    HealthTrust("si", "Sykehuset Innlandet HF", "sorost", "3403", "Hamar"),
    HealthTrust("sshf", "Sørlandet sykehus HF", "sorost", "4204", "Kristiansand"),
    HealthTrust(
        "stavanger", "Helse Stavanger HF", "vest", "1103", "Stavanger universitetssjukehus"
    ),
    HealthTrust("fonna", "Helse Fonna HF", "vest", "1106", "Haugesund sjukehus"),
    HealthTrust("bergen", "Helse Bergen HF", "vest", "4601", "Haukeland universitetssjukehus"),
    HealthTrust("forde", "Helse Førde HF", "vest", "4647", "Førde sentralsjukehus"),
    HealthTrust("hmr", "Helse Møre og Romsdal HF", "midt", "1508", "Ålesund sjukehus"),
    HealthTrust("stolav", "St. Olavs hospital HF", "midt", "5001", "St. Olavs hospital"),
    HealthTrust("hnt", "Helse Nord-Trøndelag HF", "midt", "5037", "Sykehuset Levanger"),
    HealthTrust("nlsh", "Nordlandssykehuset HF", "nord", "1804", "Bodø"),
    HealthTrust("helgeland", "Helgelandssykehuset HF", "nord", "1833", "Mo i Rana"),
    HealthTrust("unn", "Universitetssykehuset Nord-Norge HF", "nord", "5501", "Tromsø"),
    HealthTrust("finnmark", "Finnmarkssykehuset HF", "nord", "5603", "Hammerfest"),
)

#: Departments every trust gets in the demo: (key, name).
DEPARTMENTS: tuple[tuple[str, str], ...] = (
    ("med", "Medisinsk klinikk"),
    ("kir", "Kirurgisk klinikk"),
    ("barn", "Barne- og ungdomsklinikken"),
    ("akutt", "Akuttmottak"),
)

STREETS: tuple[str, ...] = (
    "Storgata",
    "Kirkegata",
    "Skolegata",
    "Parkveien",
    "Bjørkeveien",
    "Granveien",
    "Furuveien",
    "Solbakken",
    "Eikeveien",
    "Lindeveien",
    "Havnegata",
    "Torggata",
    "Strandveien",
    "Fjellveien",
    "Skogveien",
    "Bakkeveien",
    "Jernbanegata",
    "Kongens gate",
    "Dronningens gate",
    "Prinsens gate",
    "Markveien",
    "Åsveien",
    "Lyngveien",
    "Rognveien",
    "Blåbærstien",
    "Tyttebærveien",
    "Hagaveien",
    "Bekkeveien",
    "Elvegata",
    "Sjøgata",
    "Nordre gate",
    "Søndre gate",
    "Øvre Slottsgate",
    "Stasjonsveien",
    "Industriveien",
    "Gamle Kongevei",
    "Vestre vei",
    "Østre vei",
    "Kløverveien",
    "Seljeveien",
    "Ospeveien",
    "Hasselveien",
    "Lønneveien",
    "Nyveien",
    "Heiaveien",
    "Bergveien",
    "Utsikten",
    "Tunveien",
    "Engveien",
)
