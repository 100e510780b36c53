"""Who is whom (`hookhub_eventlog.people`), pure: identifiers joined by links are one person
under the smallest of their ids; a merge keeps the smaller; an undone link is not made again."""

from hookhub_eventlog.people import people, person_id, survivors

A, B, C = "email:a@example.com", "phone:+5511987654321", "telegram:42"


def test_identifiers_joined_by_links_are_one_person_under_the_smallest_id():
    grouped = people([A, B, C], [(A, B)])

    assert grouped[A] == grouped[B] == min(person_id(A), person_id(B))
    assert grouped[C] == person_id(C)


def test_an_event_joining_two_known_persons_keeps_the_smaller_id():
    known = {A: person_id(A), C: person_id(C)}

    now = survivors((A, C), known, undone=set())

    assert now[A] == now[C] == min(person_id(A), person_id(C))


def test_a_link_undone_is_not_made_again_by_a_later_event():
    now = survivors((A, B), {}, undone={(A, B)})

    assert now[A] == person_id(A) and now[B] == person_id(B)
