"""The Entra admin center's "Download users" CSV → Graph-style user objects.

The header names columns by Graph-like names (userPrincipalName, jobTitle,
physicalDeliveryOfficeName, telephoneNumber, ...), or, in newer and other
exports, by readable names ("Job title", "Office phone", "Country or region").
Both are recognised: a header is compared without case, blanks and
punctuation. A column named like a bulk template's "Name [displayName]" is
taken by the name in brackets. Unknown columns are kept under their own name
(attributes.snake_case makes the attribute name)."""
import codecs
import csv
import io
import json
import re

from . import ToolError

# Normalised header → Graph property.
ALIASES = {}
for _prop, _names in {
    "userPrincipalName": ["userprincipalname", "upn", "username"],
    "displayName": ["displayname"],
    "givenName": ["givenname", "firstname"],
    "surname": ["surname", "lastname"],
    "mail": ["mail", "email", "emailaddress"],
    "id": ["objectid", "id"],
    "userType": ["usertype"],
    "jobTitle": ["jobtitle", "title"],
    "department": ["department"],
    "accountEnabled": ["accountenabled"],
    "blockCredential": ["blockcredential", "blocksignin"],
    "usageLocation": ["usagelocation"],
    "streetAddress": ["streetaddress", "street", "address"],
    "state": ["state", "stateorprovince"],
    "country": ["country", "countryorregion"],
    "officeLocation": ["physicaldeliveryofficename", "officelocation", "office"],
    "city": ["city"],
    "postalCode": ["postalcode", "ziporpostalcode", "zipcode", "zip"],
    "businessPhones": ["telephonenumber", "officephone", "businessphone", "businessphones",
                       "phone", "phonenumber"],
    "mobilePhone": ["mobile", "mobilephone"],
    "companyName": ["companyname", "company"],
    "employeeId": ["employeeid"],
    "faxNumber": ["faxnumber", "fax"],
}.items():
    for _name in _names:
        ALIASES[_name] = _prop

# Columns holding lists, objects or booleans in Graph: never attributes.
DROPPED = {"proxyaddresses", "othermails", "imaddresses", "assignedlicenses", "assignedplans",
           "licenses", "islicensed", "extensionattributes", "onpremisesextensionattributes",
           "employeeorgdata", "authorizationinfo", "passwordprofile", "identities",
           "onpremisesprovisioningerrors", "onpremisessyncenabled", "showinaddresslist",
           "isresourceaccount"}

TRUE, FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def normalise(header):
    return re.sub(r"[\W_]+", "", header).lower()


def column_property(header):
    """The Graph property a header names, the header itself for an unknown
    column, or None for a column that is left out."""
    header = header.replace("\ufeff", "").strip()
    bracket = re.search(r"\[([A-Za-z][A-Za-z0-9_]*)\]", header)
    if bracket:
        header = bracket.group(1)
    key = normalise(header)
    if not key or key in DROPPED:
        return None
    return ALIASES.get(key, header)


def decode(raw, path):
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")  # Excel's "Unicode text"
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ToolError(f"{path}:{line}: not UTF-8 text; save the export as \"CSV UTF-8\"") from None


def is_json_container(value):
    if value[:1] not in ("[", "{"):
        return False
    try:
        return isinstance(json.loads(value), (list, dict))
    except ValueError:
        return False


def row_to_user(props, row):
    user = {}
    for prop, cell in zip(props, row):
        value = cell.strip()
        if prop is None or not value or prop in user:
            continue  # first non-empty column for a property wins
        if prop == "accountEnabled" or prop == "blockCredential":
            flag = value.lower()
            if flag in TRUE or flag in FALSE:
                enabled = (flag in TRUE) == (prop == "accountEnabled")
                if not enabled or "accountEnabled" not in user:
                    user["accountEnabled"] = enabled
            continue
        if prop == "businessPhones":
            user[prop] = json.loads(value) if is_json_container(value) else [value]
            continue
        if is_json_container(value):
            continue  # a list or object written as JSON: not an attribute
        user[prop] = value
    return user


def read(path):
    """[(label, user)] for every non-empty row, in file order."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ToolError(f"cannot read {path}: {e.strerror}") from None
    text = decode(raw, path)
    first = text.split("\n", 1)[0]
    delimiter = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    users = []
    try:
        header = next(reader, None)
        if header and len(header) == 1 and header[0].lower().startswith("version:"):
            header = next(reader, None)  # a bulk template's first row
        if not header:
            raise ToolError(f"{path}: empty file, expected a header row")
        props = [column_property(h) for h in header]
        if "mail" not in props:
            raise ToolError(f"{path}:{reader.line_num}: no mail column in the header "
                            f"(expected \"mail\" as in the Entra admin center's export)")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            users.append((f"{path}:{reader.line_num}", row_to_user(props, row)))
    except csv.Error as e:
        raise ToolError(f"{path}:{reader.line_num}: bad CSV: {e}") from None
    return users
