"""One Microsoft Graph user object → one directory record, or the reason it
is left out. CSV rows are first made into Graph-style users (csv_export), so
both sources follow the same rules, documented in docs/directory-tool.md."""
import re

# Graph property → directory attribute, in the order they are written
# (after `email`). Every other string property is written under its
# snake_case name, after these, in name order.
NAMED = {
    "mail": "email",
    "displayName": "display_name",
    "jobTitle": "title",
    "department": "department",
    "businessPhones": "phone",  # the first number
    "mobilePhone": "mobile",
    "officeLocation": "office",
    "companyName": "company",
    "streetAddress": "street",
    "city": "city",
    "postalCode": "postal_code",
    "state": "state",
    "country": "country",
}
ORDER = list(NAMED.values())

# What `sync` asks Graph for ($select); --select adds more.
SELECT = ["id", "mail", "userPrincipalName", "displayName", "givenName", "surname", "jobTitle",
          "department", "businessPhones", "mobilePhone", "officeLocation", "companyName",
          "streetAddress", "city", "postalCode", "state", "country", "employeeId", "faxNumber",
          "accountEnabled", "userType"]

MAX_VALUE_BYTES = 65535  # sigrelay refuses a directory with a longer value

# Why a user is left out; the summary counts each.
DISABLED, GUEST, NO_MAIL, INVALID = "disabled", "guest", "no mail", "invalid address"


def snake_case(name):
    """givenName → given_name, onPremisesSamAccountName → on_premises_sam_account_name,
    "Employee hire date" → employee_hire_date."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return re.sub(r"[\W_]+", "_", s).strip("_").lower()


def clean_string(value):
    """The value as written, or None: blanks trimmed, lone UTF-16 surrogates
    (which JSON allows but UTF-8 cannot hold) replaced by U+FFFD."""
    value = value.strip()
    if not value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def address_problem(address):
    """What sigrelay would refuse in an `email` value, or None."""
    at = address.find("@")
    if at <= 0 or at == len(address) - 1 or address.find("@", at + 1) != -1:
        return "not one @ with text on both sides"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in address):
        return "contains a blank or control character"
    return None


def is_disabled(user):
    return user.get("accountEnabled") is False


def is_guest(user):
    user_type = user.get("userType")
    upn = user.get("userPrincipalName")
    return ((isinstance(user_type, str) and user_type.strip().lower() == "guest")
            or (isinstance(upn, str) and "#ext#" in upn.lower()))


def to_record(user):
    """(record, None) or (None, reason). `record` is a dict: `email` first,
    then the named attributes, then the others by name; strings only."""
    if is_disabled(user):
        return None, DISABLED
    if is_guest(user):
        return None, GUEST
    mail = user.get("mail")
    mail = clean_string(mail) if isinstance(mail, str) else None
    if mail is None:
        return None, NO_MAIL
    if address_problem(mail):
        return None, INVALID

    named, others = {}, {}
    for key, value in user.items():
        if not isinstance(key, str) or "@" in key or key == "mail":
            continue  # OData annotations (@odata.type, manager@delta, ...)
        if key == "businessPhones":
            value = next((v for v in value if isinstance(v, str) and v.strip()), None) \
                if isinstance(value, list) else value
        if not isinstance(value, str):
            continue  # booleans, numbers, null, lists, objects: not attributes
        value = clean_string(value)
        if value is None or len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            continue
        if key in NAMED:
            named.setdefault(NAMED[key], value)
        else:
            name = snake_case(key)
            if name and name != "email" and name not in ORDER:
                others.setdefault(name, value)
    record = {"email": mail}
    record.update((name, named[name]) for name in ORDER if name in named)
    record.update(sorted(others.items()))
    return record, None
