"""The review console's automatic personal-data flags (moderation.review.personal_data_flags): a
pure function of the analysis' columns and sample rows."""
from marketplace.moderation.review import looks_like_email, looks_like_phone, personal_data_flags


def kinds(flags):
    return {(f["column"], f["kind"]): f["by"] for f in flags}


def test_a_column_of_email_addresses_is_flagged_by_its_values_whatever_its_name():
    sample = [{"contact": "ann@example.com", "n": 1}, {"contact": "bo.b+x@mail.example.org", "n": 2},
              {"contact": None, "n": 3}]
    [flag] = personal_data_flags([{"name": "contact"}, {"name": "n"}], sample)
    assert (flag["column"], flag["kind"], flag["by"], flag["matches"], flag["of"]) == ("contact", "email", ["values"],
                                                                                        2, 2)


def test_phone_numbers_as_people_write_them_are_flagged():
    sample = [{"reach": "+44 20 7946 0958"}, {"reach": "(415) 555-0100"}, {"reach": "030 1234 5678"}]
    assert kinds(personal_data_flags(["reach"], sample)) == {("reach", "phone"): ["values"]}


def test_columns_are_flagged_by_their_names_even_without_sample_values():
    flags = personal_data_flags(["E-mail", "customerEmail", "phone_number", "Mobile", "tel"], [])
    assert kinds(flags) == {("E-mail", "email"): ["name"], ("customerEmail", "email"): ["name"],
                            ("phone_number", "phone"): ["name"], ("Mobile", "phone"): ["name"],
                            ("tel", "phone"): ["name"]}


def test_a_named_column_whose_values_match_too_says_both():
    [flag] = personal_data_flags([{"name": "email"}], [{"email": "a@b.io"}, {"email": "c@d.io"}])
    assert flag["by"] == ["name", "values"] and flag["matches"] == 2


def test_ids_amounts_dates_and_words_are_not_personal_data():
    sample = [{"id": "1234567890", "amount": "1234.5678", "day": "2024-01-15", "town": "Hotel California",
               "hotel": "Ritz", "at": "2024-01-15 10:20:30", "count": 5551234, "cellar": "yes"}
              for _ in range(3)]
    assert personal_data_flags(list(sample[0]), sample) == []


def test_a_column_where_few_values_look_like_one_is_not_flagged_by_values():
    sample = [{"note": "write to a@b.io"}, {"note": "x"}, {"note": "a@b.io"}, {"note": "y"}, {"note": "z"}]
    assert personal_data_flags(["note"], sample) == []


def test_the_value_checks():
    assert looks_like_email("first.last@sub.example.co.uk") and not looks_like_email("not an @ address")
    assert not looks_like_email(42) and not looks_like_phone(5551234)
    assert looks_like_phone("+1-202-555-0143") and looks_like_phone("020 7946 0958")
    assert not looks_like_phone("12-05-2024") and not looks_like_phone("+12") and not looks_like_phone("12 34")
