"""Which counts a public distribution withholds (pure logic; the pages and API around it are
tested in tests/integration/test_preview.py)."""
from marketplace.catalog.preview import withheld


def test_public_distributions_withhold_a_second_count_so_that_no_rare_one_is_a_subtraction_away():
    assert withheld([997, 3]) == {0, 1}  # a boolean true 3 times: neither count
    assert withheld([300, 250, 2, 8]) == {2, 3}  # the smallest other count joins the rare one
    assert withheld([40, 4, 3]) == {1, 2}  # two rare ones adding up to 7: enough
    assert withheld([40, 1, 1]) == {0, 1, 2}  # two adding up to 2: one more
    assert withheld([40, 0, 4]) == {0, 2}  # an empty bin hides nothing
    assert withheld([10, 20, None]) == set()


def test_the_rows_the_counts_leave_out_are_one_more_withheld_count():
    assert withheld([20] * 10, rest=2) == {0}  # an 11th value seen twice: one shown count joins it
    assert withheld([20, 30], rest=7) == set()  # 7 rows past the counts shown: nothing rare
    assert withheld([50, 5, 5], rest=0) == set()
    assert withheld([], rest=3) == set()  # nothing to pair with: the caller withholds the rest's source
