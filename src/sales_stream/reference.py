"""Reference data of the fictitious retailer: French regions, cities, catalogue and channels.

Everything here is immutable (frozen dataclasses and tuples) and shared by the generator,
which draws from it, and by the event validator, which checks incoming events against it.
Region and city coordinates are real (WGS 84, decimal degrees); region weights are close to
the regions' populations in millions, so bigger regions sell more.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    """A city where the retailer sells, with its real coordinates.

    Attributes:
        name: City name as written in French.
        lat: Latitude in decimal degrees.
        lon: Longitude in decimal degrees.
        weight: Relative share of its region's sales (≈ population in thousands).

    """

    name: str
    lat: float
    lon: float
    weight: float


@dataclass(frozen=True, slots=True)
class Region:
    """A metropolitan French region (2016 boundaries).

    Attributes:
        name: Official region name, e.g. ``"Île-de-France"``.
        weight: Relative share of national sales (≈ population in millions).
        cities: Main cities; the first one is the regional capital.

    """

    name: str
    weight: float
    cities: tuple[City, ...]

    @property
    def capital(self) -> City:
        """The regional capital (first city)."""
        return self.cities[0]

    @property
    def lat(self) -> float:
        """Latitude used to place the region on a map (its capital)."""
        return self.cities[0].lat

    @property
    def lon(self) -> float:
        """Longitude used to place the region on a map (its capital)."""
        return self.cities[0].lon


@dataclass(frozen=True, slots=True)
class Product:
    """A catalogue product.

    Attributes:
        name: Product name (unique, the catalogue key).
        category: Product category, one of `CATEGORIES`.
        price_min: Lowest regular unit price in EUR.
        price_max: Highest regular unit price in EUR.
        popularity: Relative sales weight; best-sellers have the largest values.

    """

    name: str
    category: str
    price_min: float
    price_max: float
    popularity: float


REGIONS: tuple[Region, ...] = (
    Region(
        "Auvergne-Rhône-Alpes",
        8.1,
        (
            City("Lyon", 45.7640, 4.8357, 520),
            City("Grenoble", 45.1885, 5.7245, 158),
            City("Saint-Étienne", 45.4397, 4.3872, 173),
            City("Clermont-Ferrand", 45.7772, 3.0870, 147),
        ),
    ),
    Region(
        "Bourgogne-Franche-Comté",
        2.8,
        (
            City("Dijon", 47.3220, 5.0415, 159),
            City("Besançon", 47.2378, 6.0241, 119),
            City("Chalon-sur-Saône", 46.7806, 4.8539, 45),
        ),
    ),
    Region(
        "Bretagne",
        3.4,
        (
            City("Rennes", 48.1173, -1.6778, 222),
            City("Brest", 48.3904, -4.4861, 139),
            City("Quimper", 47.9960, -4.1024, 63),
            City("Vannes", 47.6582, -2.7608, 54),
        ),
    ),
    Region(
        "Centre-Val de Loire",
        2.6,
        (
            City("Orléans", 47.9030, 1.9093, 117),
            City("Tours", 47.3941, 0.6848, 137),
            City("Bourges", 47.0810, 2.3988, 64),
        ),
    ),
    Region(
        "Corse",
        0.35,
        (
            City("Ajaccio", 41.9192, 8.7386, 72),
            City("Bastia", 42.6977, 9.4508, 48),
        ),
    ),
    Region(
        "Grand Est",
        5.6,
        (
            City("Strasbourg", 48.5734, 7.7521, 291),
            City("Reims", 49.2583, 4.0317, 180),
            City("Metz", 49.1193, 6.1757, 120),
            City("Nancy", 48.6921, 6.1844, 104),
        ),
    ),
    Region(
        "Hauts-de-France",
        6.0,
        (
            City("Lille", 50.6292, 3.0573, 236),
            City("Amiens", 49.8941, 2.2958, 134),
            City("Roubaix", 50.6942, 3.1746, 99),
            City("Calais", 50.9513, 1.8587, 67),
        ),
    ),
    Region(
        "Île-de-France",
        12.3,
        (
            City("Paris", 48.8566, 2.3522, 2100),
            City("Boulogne-Billancourt", 48.8397, 2.2399, 121),
            City("Saint-Denis", 48.9362, 2.3574, 113),
            City("Versailles", 48.8049, 2.1204, 85),
        ),
    ),
    Region(
        "Normandie",
        3.3,
        (
            City("Rouen", 49.4432, 1.0999, 114),
            City("Caen", 49.1829, -0.3707, 108),
            City("Le Havre", 49.4944, 0.1079, 166),
        ),
    ),
    Region(
        "Nouvelle-Aquitaine",
        6.1,
        (
            City("Bordeaux", 44.8378, -0.5792, 261),
            City("Limoges", 45.8336, 1.2611, 130),
            City("Poitiers", 46.5802, 0.3404, 90),
            City("La Rochelle", 46.1603, -1.1511, 78),
        ),
    ),
    Region(
        "Occitanie",
        6.0,
        (
            City("Toulouse", 43.6047, 1.4442, 504),
            City("Montpellier", 43.6108, 3.8767, 302),
            City("Nîmes", 43.8367, 4.3601, 149),
            City("Perpignan", 42.6887, 2.8948, 120),
        ),
    ),
    Region(
        "Pays de la Loire",
        3.9,
        (
            City("Nantes", 47.2184, -1.5536, 323),
            City("Angers", 47.4784, -0.5632, 157),
            City("Le Mans", 48.0061, 0.1996, 145),
        ),
    ),
    Region(
        "Provence-Alpes-Côte d'Azur",
        5.1,
        (
            City("Marseille", 43.2965, 5.3698, 873),
            City("Nice", 43.7102, 7.2620, 343),
            City("Toulon", 43.1242, 5.9280, 180),
            City("Aix-en-Provence", 43.5297, 5.4474, 147),
        ),
    ),
)

CATALOGUE: tuple[Product, ...] = (
    Product("Ordinateur portable 14 pouces", "Informatique", 499.0, 899.0, 6.0),
    Product("Ordinateur portable 16 pouces Pro", "Informatique", 999.0, 1899.0, 3.0),
    Product("Ultrabook 13 pouces", "Informatique", 799.0, 1499.0, 3.0),
    Product("Ordinateur de bureau", "Informatique", 599.0, 1299.0, 1.5),
    Product("Écran 27 pouces", "Informatique", 179.0, 399.0, 3.0),
    Product("Tablette 11 pouces", "Informatique", 229.0, 649.0, 5.0),
    Product("Imprimante jet d'encre", "Informatique", 59.0, 149.0, 2.0),
    Product("Disque SSD externe 1 To", "Informatique", 69.0, 149.0, 3.0),
    Product("Smartphone premium", "Téléphonie", 899.0, 1499.0, 5.0),
    Product("Smartphone milieu de gamme", "Téléphonie", 249.0, 499.0, 10.0),
    Product("Smartphone d'entrée de gamme", "Téléphonie", 99.0, 199.0, 6.0),
    Product("Téléphone fixe sans fil", "Téléphonie", 29.0, 79.0, 1.0),
    Product("Montre connectée", "Téléphonie", 149.0, 449.0, 4.0),
    Product("Écouteurs sans fil", "Audio", 49.0, 249.0, 12.0),
    Product("Casque à réduction de bruit", "Audio", 149.0, 399.0, 5.0),
    Product("Enceinte Bluetooth", "Audio", 39.0, 199.0, 6.0),
    Product("Barre de son", "Audio", 149.0, 599.0, 2.5),
    Product("Platine vinyle", "Audio", 149.0, 449.0, 1.0),
    Product("Ampoule connectée", "Maison connectée", 9.0, 29.0, 4.0),
    Product("Thermostat connecté", "Maison connectée", 99.0, 249.0, 1.5),
    Product("Caméra de surveillance Wi-Fi", "Maison connectée", 39.0, 149.0, 3.0),
    Product("Aspirateur robot", "Maison connectée", 199.0, 799.0, 3.0),
    Product("Assistant vocal", "Maison connectée", 29.0, 99.0, 4.0),
    Product("Prise connectée", "Maison connectée", 9.0, 29.0, 3.0),
    Product("Câble USB-C", "Accessoires", 7.0, 25.0, 9.0),
    Product("Chargeur rapide 65 W", "Accessoires", 19.0, 59.0, 7.0),
    Product("Coque de smartphone", "Accessoires", 9.0, 39.0, 8.0),
    Product("Batterie externe", "Accessoires", 19.0, 69.0, 5.0),
    Product("Souris sans fil", "Accessoires", 15.0, 79.0, 5.0),
    Product("Clavier mécanique", "Accessoires", 59.0, 179.0, 2.0),
    Product("Sac pour ordinateur portable", "Accessoires", 25.0, 89.0, 2.0),
    Product("Console de salon", "Gaming", 299.0, 549.0, 4.0),
    Product("Console portable", "Gaming", 199.0, 349.0, 3.0),
    Product("Manette sans fil", "Gaming", 49.0, 79.0, 5.0),
    Product("Jeu vidéo", "Gaming", 19.0, 79.0, 8.0),
    Product("Casque gaming", "Gaming", 39.0, 199.0, 3.0),
    Product("Carte graphique", "Gaming", 299.0, 1199.0, 1.5),
)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(p.category for p in CATALOGUE))

CHANNELS: tuple[str, ...] = ("web", "magasin", "mobile", "marketplace")

REGION_BY_NAME: dict[str, Region] = {r.name: r for r in REGIONS}
PRODUCT_BY_NAME: dict[str, Product] = {p.name: p for p in CATALOGUE}
CITY_NAMES_BY_REGION: dict[str, frozenset[str]] = {
    r.name: frozenset(c.name for c in r.cities) for r in REGIONS
}
