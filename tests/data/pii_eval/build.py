"""Builds the labelled PII evaluation set (dev.jsonl, heldout.jsonl) from the sentences below.

Written by hand for tunelens (see README.md here). A sentence marks each PII value as
``{{TYPE|value}}``; the builder strips the markers and records each value's type and span. Lines
without a marker are the tricky non-PII strings (nothing in them should be redacted). Card numbers
and IBANs are checked (Luhn, mod-97) so a labelled value is a real one.

    python tests/data/pii_eval/build.py     # rewrites dev.jsonl and heldout.jsonl

The held-out half was written at the same time as the dev half, before the patterns were tuned,
and was only run once the tuning on the dev half was finished.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARK = re.compile(r"\{\{([A-Z_]+)\|(.*?)\}\}", re.S)

DEV_POSITIVE = r"""
Please email me at {{EMAIL|maria.lopez@example.org}} when the contract is ready.
Contact: {{EMAIL|j.smith+billing@mail.example.co.uk}} (billing questions only)
You can reach support on {{PHONE|+1 415 555 0123}} between 9 and 5.
Call me on {{PHONE|(212) 555-0187}} tomorrow morning.
My cell is {{PHONE|646.555.0142}}, text before calling.
Toll free: {{PHONE|1-800-555-0199}}.
Our London office is on {{PHONE|020 7946 0958}}.
Ring my mobile {{PHONE|07700 900123}} if the train is late.
UK number in international form: {{PHONE|+44 7700 900456}}.
Sie erreichen mich unter {{PHONE|030 12345678}} oder per E-Mail.
Handy: {{PHONE|0171 1234567}}
Tel. {{PHONE|+49 89 1234 5678}} (Zentrale)
Mon numéro est le {{PHONE|06 12 34 56 78}}, appelle-moi.
Le standard: {{PHONE|+33 1 23 45 67 89}}.
Appelez le {{PHONE|01.42.68.53.00}} pour réserver.
Mi móvil es {{PHONE|612 345 678}}, escríbeme por WhatsApp.
Llámanos al {{PHONE|+34 91 123 45 67}}.
Il mio numero è {{PHONE|347 123 4567}}.
Chiamare lo {{PHONE|+39 06 1234 5678}} in orario d'ufficio.
Call Ravi at {{PHONE|+91 98765 43210}} for the delivery.
Office landline {{PHONE|022 2345 6789}} (Mumbai).
E.164 stored in the CRM: {{PHONE|+14155550123}}
WhatsApp {{PHONE|+33612345678}} only.
Her SSN is {{SSN|123-45-6789}} according to the form.
SSN: {{SSN|234 56 7890}}
social security number {{SSN|345678901}} was entered twice
The applicant's social security no. is {{SSN|456-78-9012}}.
Pay with {{CREDIT_CARD|4111 1111 1111 1111}}, exp 04/27.
Card number {{CREDIT_CARD|5555-5555-5555-4444}} was declined.
Amex {{CREDIT_CARD|3782 822463 10005}} on file.
charged to {{CREDIT_CARD|6011111111111117}} yesterday
Visa ending in 1881: {{CREDIT_CARD|4012 8888 8888 1881}}
Wire it to {{IBAN|GB82 WEST 1234 5698 7654 32}} by Friday.
IBAN: {{IBAN|DE89370400440532013000}}
Virement sur {{IBAN|FR14 2004 1010 0505 0001 3M02 606}} merci.
Bonifico su {{IBAN|IT60 X054 2811 1010 0000 0123 456}}.
The attacker came from {{IP|203.0.113.77}} at midnight.
ssh into {{IP|10.12.0.5}} and restart nginx
Server IPv6: {{IP|2001:db8:85a3::8a2e:370:7334}}
Whitelist {{IP|198.51.100.23}} in the firewall.
export OPENAI_API_KEY={{SECRET|sk-proj-4fJk2LmNqR8sTvWx0yZaBcDeFgHiJkLm}}
My GitHub token is {{SECRET|ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8}}, don't share it.
aws_access_key_id = {{SECRET|AKIAIOSFODNN7EXAMPLE}}
aws_secret_access_key = {{SECRET|wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}}
Slack bot token: {{SECRET|xoxb-2048123456-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx}}
GOOGLE_API_KEY={{SECRET|AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY}}
Authorization: Bearer {{SECRET|eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c}}
DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey={{SECRET|Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==}};EndpointSuffix=core.windows.net
"private_key": "{{SECRET|-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n}}",
Use the fine-grained token {{SECRET|github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwX}} for CI.
Ship it to {{ADDRESS|1600 Pennsylvania Avenue NW}}, Washington, DC 20500.
I live at {{ADDRESS|742 Evergreen Terrace}}, Springfield.
Meet me at {{ADDRESS|350 Fifth Ave}} at noon.
The office moved to {{ADDRESS|221 W 42nd St}}, New York.
Deliver to {{ADDRESS|123 Main St., Apt 4B}}, Boston MA 02110.
Our flat is at {{ADDRESS|221B Baker Street}}, London NW1 6XE.
Send the keys to {{ADDRESS|32 Windsor Gardens}}, London.
Wohnhaft in der {{ADDRESS|Hauptstraße 5}}, 10115 Berlin.
Lieferadresse: {{ADDRESS|Berliner Str. 12}}, München
J'habite au {{ADDRESS|12 rue de Rivoli}}, 75001 Paris.
Rendez-vous au {{ADDRESS|8 boulevard Saint-Michel}}.
Vivo en la {{ADDRESS|Calle Mayor 10}}, Madrid.
La oficina está en {{ADDRESS|Avenida de la Constitución 25}}, Sevilla.
Abito in {{ADDRESS|Via Roma 12}}, Milano.
Il negozio è in {{ADDRESS|Corso Buenos Aires 33}}.
The patient, {{PERSON|Maria Garcia}}, was discharged on Monday.
Please forward this to {{PERSON|Dr. Wei Chen}} before the meeting.
{{PERSON|John Smith}} signed the lease yesterday.
I spoke with {{PERSON|Aisha Khan}} about the refund.
Ask {{PERSON|Mr. Okafor}} for the spare key.
{{PERSON|Giulia Rossi}} will present the results.
""".strip().splitlines()

HELDOUT_POSITIVE = r"""
Drop a line to {{EMAIL|t.nguyen@uni-example.edu}} for the slides.
Reply-To: {{EMAIL|noreply-alerts@service.example.com}}
Questions? Phone {{PHONE|(617) 555-0175}} or stop by.
Call {{PHONE|415-555-0168}} to confirm the booking.
Dial {{PHONE|+1-202-555-0147}} from abroad.
Our Manchester branch: {{PHONE|0161 496 0000}}.
Tel: {{PHONE|+44 20 7946 0321}}
Ruf mich an: {{PHONE|+49 171 2345678}}.
Unsere Nummer lautet {{PHONE|089/1234567}}.
Téléphone : {{PHONE|+33 (0)6 98 76 54 32}}
Mon portable : {{PHONE|07 81 22 33 44}}.
Teléfono de contacto: {{PHONE|+34 612 34 56 78}}.
Numero fisso {{PHONE|02 12345678}} (Milano).
Mobile no. {{PHONE|98201 23456}} (Pune).
Helpline {{PHONE|011-23456789}}, Delhi.
Stored as {{PHONE|+442079460123}} in the database.
His social security number is {{SSN|567-12-3456}}.
SSN {{SSN|678 90 1234}} appears on the W-2.
Enter SSN without dashes: {{SSN|212459876}}
The card {{CREDIT_CARD|4242 4242 4242 4242}} was charged twice.
Mastercard {{CREDIT_CARD|2223 0031 2200 3222}} expires next month.
AMEX: {{CREDIT_CARD|371449635398431}}
Payer sur {{IBAN|BE68 5390 0754 7034}} avant lundi.
Transferencia a {{IBAN|ES91 2100 0418 4502 0005 1332}}.
Transfer the deposit to {{IBAN|NL91 ABNA 0417 1643 00}} before the 5th.
The login came from {{IP|192.0.2.146}}.
DNS is {{IP|8.8.4.4}}, gateway {{IP|192.168.1.1}}.
Peer address {{IP|fe80::1ff:fe23:4567:890a}} on eth0
OPENAI_API_KEY="{{SECRET|sk-9xYz8WvU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA98765432}}"
[default]
aws_secret_access_key={{SECRET|je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY}}
The temporary key id {{SECRET|ASIAY34FZKBOKMUTVV7A}} expired.
Set SLACK_TOKEN to {{SECRET|xoxp-1234567890-0987654321-1122334455-abcdef0123456789abcdef0123456789}} in the env file.
Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={{SECRET|3kF9aLmQ2xT7vB1nH8pZ0cW4rY6uE5sJ+dG2iK7oM1A=}}
Personal access token: {{SECRET|ghp_Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn}}
Maps key {{SECRET|AIzaSyB1x2Y3z4A5b6C7d8E9f0G1h2I3j4K5l6M}} is restricted to our domain.
The session cookie was {{SECRET|eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhY2NvdW50cyIsInN1YiI6IjQyIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk}}
Mail the cheque to {{ADDRESS|4059 Mt Lee Dr}}, Hollywood, CA.
Our new address: {{ADDRESS|77 Massachusetts Ave}}, Cambridge.
Visitors go to {{ADDRESS|15 Station Road}}, Reading RG1 1LG.
Sie finden uns in der {{ADDRESS|Goethestraße 14a}}.
Adresse : {{ADDRESS|5 avenue des Champs-Élysées}}, Paris.
Estamos en {{ADDRESS|Calle de Alcalá 45}}, Madrid.
Ci vediamo in {{ADDRESS|Piazza Navona 45}}.
The file belongs to {{PERSON|Priya Patel}}.
Send the invoice to {{PERSON|Mrs. Helen Walsh}}.
{{PERSON|Hans Müller}} approved the transfer.
My neighbour {{PERSON|Carlos Mendoza}} has the spare key.
""".strip().splitlines()

DEV_NEGATIVE = r"""
Upgrade to version 1.2.3.4 before Friday.
The release v2.10.3.1 fixes the crash.
See section 3.1.4.2 for the proof.
The meeting is on 2024-03-15 at 14:30.
Born 05/04/1987 in a small town.
ISBN 978-3-16-148410-0 is out of print.
Your order number is 114-3941689-8772269.
Request id 550e8400-e29b-41d4-a716-446655440000 failed.
123 + 456 = 579 and 579 - 123 = 456.
The total was $1,234,567.89 after tax.
Coordinates 48.8566, 2.3522 mark the spot.
Tracking number 1Z999AA10123456784 shows it in transit.
Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 broke the build.
Use colour #1a2b3c for the header.
The population grew from 8,336,817 to 8,804,190.
Read pages 120-135 of chapter 4.
Timestamp 1700000000 is in November 2023.
Error code 0x80070005 means access denied.
The answer is 3.14159265358979.
Flight LH 2024 departs at 07:45 from gate B12.
Room 1204, building 7, floor 12.
Product SKU 4006381333931 is out of stock.
Run pip install torch==2.3.1 first.
Matrix dims 512 x 768 x 1024.
The function returns 4294967295 on overflow.
Invoice INV-2023-000145 is overdue.
Paris is lovely in the spring.
Will you help me move on Saturday?
Grace period ends after 30 days.
The Apple Watch Series 9 was announced.
""".strip().splitlines()

HELDOUT_NEGATIVE = r"""
Install version 10.0.19041.1 of the SDK.
Firmware v3.2.1.15 adds Bluetooth support.
Refer to clause 4.3.2.1 of the standard.
The deadline is 31.12.2024.
Date of issue: 12/31/2023.
ISBN 0-306-40615-2 in the library catalogue.
Order #4829-1734-5521 has shipped.
Ticket 2023-11-07-0042 was closed.
UUID 6fa459ea-ee8a-3ca4-894e-db77e160355e
7 * 8 = 56 and 56 / 7 = 8.
The GDP was 21,433,226 million dollars.
Latitude 40.7128, longitude -74.0060.
The hash is d41d8cd98f00b204e9800998ecf8427e.
Chapter 12: Road Safety for cyclists.
Route 66 runs from Chicago to Santa Monica.
Lot 4521 of 10000 units was recalled.
Listen on port 8080 and 8443.
It took 1,000,000 iterations to converge.
Use semver 2.0.0 and Python 3.11.4.
The year 1984 and the year 2001 are both films.
Patch KB5034441 failed to install.
Serial no. 00123-45678-90123-AAOEM
Temperature dropped to -12.5 degrees.
Phone models: iPhone 15, Pixel 8, Galaxy S24.
Batch sizes of 16, 32, 64 and 128 were tried.
Score 98.6 out of 100 on the test.
The image is 1920x1080 at 60 fps.
Resolution 3840 by 2160 pixels.
Between 1939 and 1945 the war raged.
Jordan scored 32 points last night.
Victoria Station is closed for repairs.
Christian values shaped the law.
Mark the date in your calendar.
Amazon reported record profits.
The Golden Gate Bridge opened in 1937.
We used Adam with learning rate 0.0003.
Account 12 of 40 in the list was skipped.
Model BERT-base has 110M parameters.
Sequence 1 1 2 3 5 8 13 21 34 55 89 144.
Dial-up modems ran at 56.6 kbps.
""".strip().splitlines()


# A second held-out half, written after the first tuning round and before any further change to the
# patterns (committed before it was first run), with more values of the rarer types.
HELDOUT2_POSITIVE = r"""
Forward the receipts to {{EMAIL|accounts.payable@example.net}} by Monday.
cc: {{EMAIL|o'brien.k@example.ie}}
Her personal address is {{EMAIL|lena_95@example.de}}, not the work one.
Login: {{EMAIL|admin@intranet.example.com}} / password reset pending
Questions go to {{EMAIL|support@example.fr}}.
Contact Jorge ({{EMAIL|jorge.ruiz@example.es}}) for the keys.
Phone our Denver office at {{PHONE|(303) 555-0110}}.
Cell: {{PHONE|303-555-0199}}
Dial {{PHONE|+1 (303) 555-0111}} from outside the US.
Leeds switchboard {{PHONE|0113 496 0123}}.
Tel: {{PHONE|+44 (0)20 7946 0000}}
Text me on {{PHONE|07911 123456}} when you land.
Büro Hamburg: {{PHONE|040 12345678}}
Mobil: {{PHONE|0151 23456789}}
Telefon {{PHONE|+49 (0)30 1234567}}
Cabinet médical : {{PHONE|04 91 12 34 56}}
Standard : {{PHONE|+33 4 91 12 34 56}}
Oficina de Barcelona: {{PHONE|+34 932 123 456}}
Teléfono fijo {{PHONE|93 212 34 56}}
Cellulare: {{PHONE|+39 347 123 4567}}
Ufficio di Firenze {{PHONE|055 123 4567}}
Bangalore office {{PHONE|080 4123 4567}}
Mumbai desk: {{PHONE|+91-22-2345-6789}}
My SSN is {{SSN|219-09-9999}} if you need it for the form.
ssn: {{SSN|078 05 1120}}
Social Security Number: {{SSN|536228791}}
Employee SSN {{SSN|401-23-4567}} is on the payroll sheet.
Charge {{CREDIT_CARD|4000 0566 5566 5556}} for the deposit.
MasterCard {{CREDIT_CARD|5200828282828210}} exp 11/26
Diners Club {{CREDIT_CARD|3622 720627 1667}} on file
Discover: {{CREDIT_CARD|6011-0009-9013-9424}}
JCB {{CREDIT_CARD|3566 0020 2036 0505}}, CVV withheld
The refund goes to {{IBAN|AT61 1904 3002 3457 3201}}.
Konto: {{IBAN|CH93 0076 2011 6238 5295 7}}
Przelew na {{IBAN|PL61 1090 1014 0000 0712 1981 2874}}
Insättning till {{IBAN|SE45 5000 0000 0583 9825 7466}}
IBAN {{IBAN|IE29AIBK93115212345678}} (Dublin branch)
Failed logins from {{IP|203.0.113.9}} and {{IP|198.51.100.200}}.
Set the proxy to {{IP|172.16.254.1}}:3128.
The host {{IP|2001:db8::ff00:42:8329}} answers pings.
curl http://{{IP|192.0.2.10}}/health
HF_TOKEN={{SECRET|hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789}}
stripe key {{SECRET|sk_live_4eC39HqLyjWDarjtT1zdp7dc}}
GITLAB_TOKEN: {{SECRET|glpat-x7Yz9AbCdEfGhIjKlMn0}}
password = "{{SECRET|Tr0ub4dor&3xyzzy42}}"
client_secret: {{SECRET|8Q~dF3k9LmNpQrStUvWxYz0123456789AbCd}}
AWS_ACCESS_KEY_ID={{SECRET|AKIAI44QH8DHBEXAMPLE}}
AWS_SECRET_ACCESS_KEY={{SECRET|je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY}}
Anthropic key {{SECRET|sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345}} rotated
Send the parcel to {{ADDRESS|1234 Elm Street}}, Springfield, IL 62704.
Office: {{ADDRESS|500 Oracle Pkwy}}, Redwood City.
We moved to {{ADDRESS|18 Rose Lane}}, Bristol BS1 4DJ.
Flat 2, {{ADDRESS|9 Queen's Road}}, Brighton.
Anschrift: {{ADDRESS|Lindenallee 23}}, 50968 Köln
Besuchen Sie uns in der {{ADDRESS|Friedrichstraße 101}}.
Livraison au {{ADDRESS|27 rue Victor Hugo}}, Lyon.
Dirección: {{ADDRESS|Paseo de Gracia 92}}, Barcelona.
Sede legale in {{ADDRESS|Via Garibaldi 8}}, Torino.
The witness, {{PERSON|Sarah Thompson}}, left early.
Invoice addressed to {{PERSON|Prof. Ingrid Larsen}}.
{{PERSON|Ahmed Hassan}} booked the room for Tuesday.
Please call {{PERSON|Mrs. Kowalski}} back.
Signed: {{PERSON|Luca Bianchi}}
Our tenant {{PERSON|Emily Carter}} paid late again.
{{PERSON|Grace Hopper}} coined the term bug.
""".strip().splitlines()

HELDOUT2_NEGATIVE = r"""
Python 3.12.1 and NumPy 1.26.4 are required.
Chrome 120.0.6099.109 fixed the issue.
The SNMP OID 1.3.6.1.4.1.9 identifies Cisco.
See figure 2.1.3.4 for the layout.
According to §4.2.1.3 the fee is waived.
The price in 2019 was $1,299.99.
Dates: 2024/03/15, 15.03.2024 and March 5, 2024.
ISO timestamp 2024-03-15T14:30:00Z.
The zip code 94103 covers SoMa.
Call of Duty 4 sold 15 million copies.
Apollo 11 landed on July 20, 1969.
The answer to 1234 * 5678 is 7006652.
Pi to ten digits is 3.1415926535.
Her score improved from 1450 to 1520.
The DOI is 10.1038/nphys1170.
Use RFC 5322 for e-mail syntax.
The account has 3 users and 12 projects.
We shipped 24,000 units in Q3 2023.
Bus 42 leaves every 15 minutes.
The recipe needs 250 g flour and 2 eggs.
PMID 31452104 describes the trial.
The court case 2:19-cv-01234 was dismissed.
Kernel 6.5.0-14-generic boots fine.
A 4K display has 3840 x 2160 = 8294400 pixels.
Listen on 0.0.0.0 to accept all interfaces.
The mean was 12.5 (SD 3.2, n = 48).
Chapter 7, verse 14 is often quoted.
Lakers won 112-108 in overtime.
Build 20231115.3 passed all tests.
The hex value 0xDEADBEEF is a classic.
The vote was 52-48 in favour.
Temperature ranged from 18 to 24 degrees.
Tokyo has a population of about 14 million.
Mount Everest is 8,849 metres tall.
Martin Luther King Jr. Day is a holiday.
George Street Bakery opened a second shop.
The Baker Street line was closed.
Downing Street issued a statement.
Victoria Park hosts a festival in June.
""".strip().splitlines()


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(value: str) -> bool:
    s = value.replace(" ", "")
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def parse(line: str) -> dict:
    text, entities, pos, out = line.replace("\\n", "\n") if False else line, [], 0, []
    for m in MARK.finditer(line):
        out.append(line[pos:m.start()])
        start = sum(map(len, out))
        value = m.group(2)
        out.append(value)
        entities.append({"type": m.group(1), "start": start, "end": start + len(value), "value": value})
        kind = m.group(1)
        if kind == "CREDIT_CARD":
            assert _luhn_ok(re.sub(r"\D", "", value)), value
        if kind == "IBAN":
            assert _iban_ok(value), value
        pos = m.end()
    out.append(line[pos:])
    text = "".join(out)
    for e in entities:
        assert text[e["start"]:e["end"]] == e["value"]
    return {"text": text, "entities": entities}


def build() -> None:
    for split, pos, neg in (("dev", DEV_POSITIVE, DEV_NEGATIVE), ("heldout", HELDOUT_POSITIVE, HELDOUT_NEGATIVE),
                            ("heldout2", HELDOUT2_POSITIVE, HELDOUT2_NEGATIVE)):
        rows = []
        for i, line in enumerate(pos):
            rows.append({"id": f"{split}-p{i:03d}", "kind": "pii", **parse(line)})
        for i, line in enumerate(neg):
            assert "{{" not in line
            rows.append({"id": f"{split}-n{i:03d}", "kind": "tricky_non_pii", "text": line, "entities": []})
        with (HERE / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    build()
